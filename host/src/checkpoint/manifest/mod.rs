//! The manifest: the commit point of a checkpoint or savepoint, written last.
//! It names every blob with its size and SHA-256, so a restore can refuse a
//! damaged savepoint before touching any state.
//!
//! This file holds the format (format 2, [`MANIFEST_FORMAT`]) and the
//! names of folders; `read.rs` reads, lists and selects manifests (by
//! name, `latest` or `before:TIME`); `v1.rs` converts format 1 on read;
//! `timers.rs` encodes the timer blob (on the shared `codec`). The times
//! shown and accepted are parsed and formatted in `clock` (re-exported
//! here as [`parse_time`] and [`format_time`]).

mod read;
mod timers;
mod v1;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::sha256_hex;

pub use crate::clock::{format_time, parse_time};
pub use read::{Corrupt, Found, checkpoint_folder_ids, list, list_all, parse, read, select};
pub use timers::{decode_timers, encode_timers};

/// Layout version of manifests this host writes. Format 1 (one file
/// position, per-task file-sink state) is still read, converted on read.
pub const MANIFEST_FORMAT: u32 = 2;

/// Checkpoint (periodic, pruned) or savepoint (user-triggered, kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Periodic; the newest N are kept.
    Checkpoint,
    /// Triggered by a user or a schedule; kept until deleted.
    Savepoint,
}

/// Where the source was at the barrier. The runtime never looks inside:
/// the connector that wrote it reads it back on restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The connector that wrote it (`files`, `kafka`); a restore with
    /// another source type is refused.
    pub connector: String,
    /// The reader's own position (the file source: file, byte offset,
    /// line), `null` when it has none beyond its partitions'.
    #[serde(default)]
    pub position: Value,
}

/// A blob of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Key relative to the checkpoint folder.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

impl BlobRef {
    /// Describe `bytes` stored at `path`.
    pub fn of(path: String, bytes: &[u8]) -> Self {
        Self {
            path,
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }
}

/// One operator of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorEntry {
    /// Operator name in the job.
    pub name: String,
    /// SHA-256 of the component that wrote the state.
    pub plugin_digest: String,
    /// State schema version of the snapshot.
    pub state_version: u32,
    /// The `snapshot` bytes.
    pub state: BlobRef,
    /// Registered timers.
    pub timers: BlobRef,
    /// Number of timers.
    pub timer_count: u64,
}

/// One partition: its operators' state and timers, and the opaque
/// positions of the source and sink in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionEntry {
    /// Partition index.
    pub partition: usize,
    /// The partition's watermark at the barrier.
    pub watermark: i64,
    /// The source's position in this partition (Kafka: the next offset),
    /// `null` for sources with one position for all.
    #[serde(default)]
    pub source: Value,
    /// What the partition's sink recorded at the barrier
    /// ([`crate::sink::Sink::pre_commit`]), if anything.
    #[serde(default)]
    pub sink: Option<Value>,
    /// The sink's bulk state, if it wrote any (records written ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_blob: Option<BlobRef>,
    /// Its operators, in chain order.
    pub operators: Vec<OperatorEntry>,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Job name.
    pub job: String,
    /// Checkpoint or savepoint.
    pub kind: Kind,
    /// Checkpoint id (savepoints share the sequence).
    pub id: u64,
    /// Savepoint name, or the checkpoint id as text.
    pub name: String,
    /// Wall time of the barrier, ms since the Unix epoch.
    pub wall_time_ms: i64,
    /// Watermark at the barrier (event time, ms).
    pub watermark: i64,
    /// Largest event time seen before the barrier.
    pub max_event_time: i64,
    /// Weir host version.
    pub host_version: String,
    /// WIT package version.
    pub wit_version: String,
    /// Worker threads of the run that took it (informational: a restore
    /// may use another parallelism; the partitions must match).
    pub parallelism: usize,
    /// Source position.
    pub source: SourcePosition,
    /// Per partition, in partition order.
    pub partitions: Vec<PartitionEntry>,
}

impl Manifest {
    /// Total size of the blobs.
    pub fn state_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .flat_map(|t| &t.operators)
            .map(|o| o.state.size + o.timers.size)
            .sum()
    }

    /// Each partition's source offset (Kafka's next offset) as
    /// `partition:offset`, separated by spaces.
    pub fn partition_offsets(&self) -> String {
        let offsets: Vec<String> = self
            .partitions
            .iter()
            .map(|e| format!("{}:{}", e.partition, e.source["offset"]))
            .collect();
        offsets.join(" ")
    }
}

/// Folder (key prefix) of a job's checkpoint or savepoint.
pub fn folder(job: &str, kind: Kind, name: &str) -> String {
    match kind {
        Kind::Checkpoint => format!("jobs/{job}/checkpoints/{name}"),
        Kind::Savepoint => format!("jobs/{job}/savepoints/{name}"),
    }
}

/// The folder name of checkpoint `id` (zero-padded so names sort by id).
pub fn checkpoint_name(id: u64) -> String {
    format!("{id:010}")
}
