//! The resolved plan the runtime executes, and its job-level parts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::tables::BatchConfig;
use super::{EngineSettings, SinkSpec, SourceSpec};
use crate::checkpoint::store::StoreSpec;

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
