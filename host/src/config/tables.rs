//! The job-level tables of a job file: the state store, checkpoints, the
//! control endpoint, the engine, batching, operators and the dead-letter
//! output. Connectors' tables live with their connectors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{BatchSettings, EngineSettings};
use crate::sink::dead_letter::{DeadLetterSpec, TopicSpec};
use crate::{Error, Result};

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
/// The dead-letter output: a JSON-lines file (`path`), or a Kafka topic
/// (`type = "kafka"`, `brokers`, `topic`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// `"file"` (the default) or `"kafka"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A JSON-lines file (appended to); `type = "file"` only.
    pub path: Option<PathBuf>,
    /// Bootstrap brokers; `type = "kafka"` only.
    pub brokers: Option<String>,
    /// The dead-letter topic (it must exist); `type = "kafka"` only.
    pub topic: Option<String>,
    /// librdkafka producer properties (security, compression); `type =
    /// "kafka"` only. Default empty.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl DeadLetterConfig {
    /// The resolved output; a relative `path` is taken from `base`.
    pub(crate) fn resolve(&self, base: &std::path::Path) -> Result<DeadLetterSpec> {
        let kafka_only = [
            ("brokers", self.brokers.is_some()),
            ("topic", self.topic.is_some()),
            ("properties", !self.properties.is_empty()),
        ];
        match self.kind.as_deref().unwrap_or("file") {
            "file" => {
                if let Some((k, _)) = kafka_only.iter().find(|(_, set)| *set) {
                    return Err(Error::Config(format!(
                        "[dead_letter] {k} is for type = \"kafka\"; a file takes only `path`"
                    )));
                }
                let path = self.path.as_ref().ok_or_else(|| {
                    Error::Config(
                        "[dead_letter] needs `path` (a JSON-lines file), or type = \"kafka\" \
                         with `brokers` and `topic`"
                            .into(),
                    )
                })?;
                Ok(DeadLetterSpec::File(base.join(path)))
            }
            "kafka" => {
                if self.path.is_some() {
                    return Err(Error::Config(
                        "[dead_letter] type = \"kafka\" writes to `topic`; `path` is for a file"
                            .into(),
                    ));
                }
                let (Some(brokers), Some(topic)) = (&self.brokers, &self.topic) else {
                    return Err(Error::Config(
                        "[dead_letter] type = \"kafka\" needs `brokers` and `topic`".into(),
                    ));
                };
                crate::kafka::refuse_owned("[dead_letter]", self.properties.keys())?;
                Ok(DeadLetterSpec::Topic(TopicSpec {
                    brokers: brokers.clone(),
                    topic: topic.clone(),
                    properties: self
                        .properties
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }))
            }
            other => Err(Error::Config(format!(
                "[dead_letter] type `{other}`: use `file` or `kafka`"
            ))),
        }
    }
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
    /// Most MiB the cache folder may hold; past it, the entries used least
    /// recently are removed. Default 1024.
    #[serde(default = "default_cache_max_mb")]
    pub cache_max_mb: u64,
}

fn default_cache_max_mb() -> u64 {
    crate::plugin::cache::DEFAULT_MAX_MB
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
            cache_max_mb: default_cache_max_mb(),
        }
    }
}

/// Batching across the Wasm boundary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records in one batch. Default 8192.
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
    BatchSettings::default().max_records
}
fn default_max_bytes() -> usize {
    BatchSettings::default().max_bytes
}
fn default_linger_ms() -> u64 {
    BatchSettings::default().linger.as_millis() as u64
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
