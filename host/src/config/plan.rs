//! The resolved plan the runtime executes, and its job-level parts.

use std::time::Duration;

use super::{
    BatchSettings, DeadLetterSpec, EngineSettings, OperatorSpec, RestartStrategy, SinkSpec,
    SourceSpec,
};
use crate::checkpoint::store::StoreSpec;

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
    /// Where dead letters go (`None`: standard error).
    pub dead_letter: Option<DeadLetterSpec>,
    /// Sandbox settings.
    pub engine: EngineSettings,
    /// Batching settings.
    pub batch: BatchSettings,
    /// Checkpointing (`None`: no checkpoints, savepoints or restores).
    pub checkpoint: Option<CheckpointPlan>,
    /// Control endpoint address (`None`: not served).
    pub control: Option<std::net::SocketAddr>,
    /// What a failure while running does (restarts from the newest
    /// checkpoint, or none).
    pub restart: RestartStrategy,
}
