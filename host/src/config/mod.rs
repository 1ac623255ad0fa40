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
//!
//! Each connector owns its table and its resolution (`source/file/`,
//! `source/kafka/`, `sink/file/`, `sink/kafka/`); this module keeps the
//! job-level shape ([`JobFile`], `tables.rs`, the [`Plan`] in `plan.rs`)
//! and dispatches on `type` to the connector ([`SourceConfig`],
//! [`SinkConfig`]). Users reach every connector's settings here, and only
//! here (the connector modules are private to the crate).

mod plan;
mod restart;
mod tables;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::checkpoint::store::StoreSpec;
pub use crate::plugin::{EngineSettings, OperatorSpec, PluginSource};
pub use crate::runtime::BatchSettings;
pub use crate::sink::dead_letter::{DeadLetterSpec, TopicSpec as DeadLetterTopicSpec};
pub use crate::sink::{
    Delivery, FileSinkConfig, FileSinkSpec, KafkaSinkConfig, KafkaSinkSpec, SinkSpec,
};
pub use crate::source::file::{FileSourceConfig, FileSourceSpec, Format, KeySpec};
pub use crate::source::hybrid::{HybridSourceConfig, HybridSourceSpec};
pub use crate::source::kafka::{KafkaSourceConfig, KafkaSourceSpec, OutOfRange, Start, Until};
use crate::source::resolve::ResolvedSource;
pub use crate::source::resolve::SourceSpec;
use crate::{Error, Result};
pub use plan::{CheckpointPlan, Plan};
pub use restart::{RestartConfig, RestartStrategy};
pub use tables::{
    BatchConfig, CheckpointConfig, ControlConfig, DeadLetterConfig, EngineConfig, OperatorConfig,
    StateConfig,
};

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
    /// state, timers and sink output. A savepoint restores into the same
    /// number of partitions with any parallelism; a file job's also into
    /// another number (its state split by key). Default: the parallelism.
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
    /// What a failure while running does: `none` (the job fails),
    /// `fixed-delay` or `failure-rate` restarts from the newest checkpoint.
    #[serde(default)]
    pub restart: RestartConfig,
}

fn default_parallelism() -> usize {
    1
}
/// A source: `type` picks the connector; the other fields are its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A directory of files read as one ordered stream.
    Files(FileSourceConfig),
    /// A Kafka topic; each of its partitions is a partition of the job.
    Kafka(KafkaSourceConfig),
    /// A folder of files (the history), then a Kafka topic (live).
    Hybrid(HybridSourceConfig),
}

impl SourceConfig {
    /// The connector's resolution of its table; relative paths resolve
    /// against `base`, `job` names defaults (a consumer group).
    fn resolve(&self, base: &Path, job: &str) -> Result<ResolvedSource> {
        match self {
            SourceConfig::Files(c) => c.resolve(base),
            SourceConfig::Kafka(c) => c.resolve(job),
            SourceConfig::Hybrid(c) => c.resolve(base, job),
        }
    }
}

/// A sink: `type` picks the connector; the other fields are its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// One line per emitted record value on standard output.
    #[default]
    Stdout,
    /// A directory with JSON-lines part files per partition.
    File(FileSinkConfig),
    /// A Kafka topic (it must exist).
    Kafka(KafkaSinkConfig),
}

impl SinkConfig {
    /// The connector's resolution of its table; relative paths resolve
    /// against `base`, `checkpoints` says whether the job takes them.
    fn resolve(&self, base: &Path, checkpoints: bool) -> Result<SinkSpec> {
        Ok(match self {
            SinkConfig::Stdout => SinkSpec::Stdout,
            SinkConfig::File(c) => SinkSpec::Files(c.resolve(base)),
            SinkConfig::Kafka(c) => SinkSpec::Kafka(c.resolve(checkpoints)?),
        })
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
        let source = self.source.resolve(base, &name)?;
        let sink = self.sink.resolve(base, self.checkpoints.enabled)?;
        if let SinkSpec::Kafka(k) = &sink
            && k.delivery == crate::sink::kafka::Delivery::ExactlyOnce
            && self.checkpoints.enabled
            && self.checkpoints.interval_ms == 0
        {
            return Err(Error::Config(
                "[sink] delivery = \"exactly-once\" produces output at each checkpoint, and \
                 [checkpoints] interval_ms = 0 takes none until the input ends: the whole \
                 run's output would wait in memory. Set interval_ms (e.g. 1000), or \
                 delivery = \"at-least-once\""
                    .into(),
            ));
        }
        let dead_letter = self
            .dead_letter
            .as_ref()
            .map(|d| d.resolve(base))
            .transpose()?;
        if let Some(dir) = source.spec.folder() {
            let file = match &dead_letter {
                Some(DeadLetterSpec::File(p)) => Some(p.as_path()),
                _ => None,
            };
            outside_source(dir, &sink, file)?;
        }
        let partitions = match (self.partitions, source.own_partitions) {
            (Some(p), _) => p,
            // The input's own partitions (a topic's), found when the
            // source connects.
            (None, true) => 0,
            (None, false) => self.parallelism,
        };
        Ok(Plan {
            name,
            parallelism: self.parallelism,
            partitions,
            source: source.spec,
            watermark_delay_ms: source.watermark_delay_ms,
            idle_timeout: source.idle_timeout,
            operators: self.resolve_operators(base)?,
            sink,
            dead_letter,
            engine: EngineSettings {
                call_timeout: Duration::from_millis(self.engine.call_timeout_ms.max(1)),
                state_call_timeout: Duration::from_millis(self.engine.state_call_timeout_ms.max(1)),
                memory_bytes: self.engine.memory_mb.saturating_mul(1 << 20) as usize,
                cache_dir: self.engine.cache_dir.as_ref().map(|d| base.join(d)),
                cache_max_bytes: self.engine.cache_max_mb.saturating_mul(1 << 20),
            },
            batch: BatchSettings {
                max_records: self.batch.max_records.max(1),
                max_bytes: self.batch.max_bytes.max(1),
                linger: Duration::from_millis(self.batch.linger_ms),
            },
            checkpoint: self.resolve_checkpoints(base),
            control: self.resolve_control()?,
            restart: self.restart.resolve(self.checkpoints.enabled)?,
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
    if let Some(dir) = sink.folder()
        && inside(dir)
    {
        return Err(Error::Config(format!(
            "the sink folder {} is inside the source folder {}: the job would read its own output",
            dir.display(),
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
        assert_eq!(plan.batch.max_records, 8192);
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

    #[test]
    fn a_dead_letter_table_is_a_file_or_a_topic_never_half_of_each() {
        let resolve = |table: &str| {
            JobFile::parse(&format!("{JOB}\n[dead_letter]\n{table}\n"))
                .unwrap()
                .resolve("job", Path::new("/jobs"))
                .map(|p| p.dead_letter)
        };
        assert_eq!(
            resolve("path = \"dl.jsonl\"").unwrap(),
            Some(DeadLetterSpec::File("/jobs/dl.jsonl".into()))
        );
        let topic = resolve("type = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"dl\"").unwrap();
        assert!(
            matches!(&topic, Some(DeadLetterSpec::Topic(t)) if t.topic == "dl" && t.brokers == "b:9092"),
            "{topic:?}"
        );
        for (table, says) in [
            (
                "type = \"kafka\"\nbrokers = \"b:9092\"",
                "needs `brokers` and `topic`",
            ),
            (
                "type = \"kafka\"\ntopic = \"dl\"\nbrokers = \"b\"\npath = \"x\"",
                "`path` is for a file",
            ),
            (
                "path = \"x\"\ntopic = \"dl\"",
                "topic is for type = \"kafka\"",
            ),
            ("type = \"s3\"\npath = \"x\"", "use `file` or `kafka`"),
            ("", "needs `path`"),
            (
                "type = \"kafka\"\nbrokers = \"b\"\ntopic = \"dl\"\nproperties = { \"bootstrap.servers\" = \"x\" }",
                "bootstrap.servers",
            ),
        ] {
            let err = resolve(table).unwrap_err().to_string();
            assert!(err.contains(says), "{table}: {err}");
        }
    }

    #[test]
    fn refuses_a_key_column_that_is_the_timestamp_column() {
        let job = JobFile::parse(&JOB.replace("key_column = 0", "key_column = 2")).unwrap();
        let err = job.resolve("job", Path::new("/")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`key_column` and `timestamp_column` are both column 2"),
            "{err}"
        );
    }
}
