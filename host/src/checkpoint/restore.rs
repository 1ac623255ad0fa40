//! Loading a checkpoint or savepoint to start a job from: find it, then
//! check every blob against the manifest (present, size, SHA-256) and the
//! manifest against the job, so a damaged or foreign savepoint is refused
//! with a message naming the problem before any task starts.

use bytes::Bytes;
use serde_json::Value;

use super::manifest::{self, BlobRef, Manifest};
use super::store::{StateStore, StoreSpec};
use crate::batch::Timer;
use crate::digest::sha256_hex;
use crate::sink::RestoredSink;
use crate::{Error, Result};

/// One operator's restored state.
#[derive(Debug, Clone)]
pub struct RestoredOperator {
    /// Operator name.
    pub name: String,
    /// Digest of the component that wrote it.
    pub digest: String,
    /// State schema version.
    pub state_version: u32,
    /// The `snapshot` bytes.
    pub state: Bytes,
    /// Its timers.
    pub timers: Vec<Timer>,
}

/// One partition's restored state.
#[derive(Debug, Clone)]
pub struct RestoredPartition {
    /// Watermark at the barrier.
    pub watermark: i64,
    /// The source's position in the partition (opaque).
    pub source: Value,
    /// The sink's state (opaque), with its blob.
    pub sink: Option<RestoredSink>,
    /// Operators in chain order.
    pub operators: Vec<RestoredOperator>,
}

/// A verified checkpoint or savepoint.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Where it was found.
    pub location: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Per partition.
    pub partitions: Vec<RestoredPartition>,
}

impl Restored {
    /// An error about this savepoint.
    pub fn error(&self, detail: impl Into<String>) -> Error {
        Error::Savepoint {
            location: self.location.clone(),
            detail: detail.into(),
        }
    }
}

/// Find `selector` (a name, `latest`, `before:TIME` or a URL of a savepoint
/// folder) for `job` and verify it.
pub fn load(store: &StateStore, job: &str, selector: &str) -> Result<Restored> {
    if selector.contains("://") {
        let spec = StoreSpec {
            url: selector.trim_end_matches("/manifest.json").to_string(),
            ..Default::default()
        };
        let other = StateStore::open(&spec, std::path::Path::new("."))?;
        let m = manifest::read(&other, "")?.ok_or_else(|| Error::Savepoint {
            location: selector.into(),
            detail: "no manifest.json there (an incomplete checkpoint, or not a savepoint)".into(),
        })?;
        return verify(&other, "", selector.to_string(), m, job);
    }
    let found = manifest::select(store, job, selector)?;
    let location = format!("{}/{}", store.url().trim_end_matches('/'), found.folder);
    verify(store, &found.folder, location, found.manifest, job)
}

/// Check `m` against `job`, then fetch and check every blob it names.
fn verify(
    store: &StateStore,
    folder: &str,
    location: String,
    m: Manifest,
    job: &str,
) -> Result<Restored> {
    let blobs = Blobs {
        store,
        folder,
        location: &location,
    };
    check_manifest(&m, job).map_err(|detail| blobs.error(detail))?;
    let partitions = m
        .partitions
        .iter()
        .map(|t| restore_partition(&blobs, t, m.id))
        .collect::<Result<Vec<_>>>()?;
    Ok(Restored {
        location,
        manifest: m,
        partitions,
    })
}

/// The manifest belongs to `job` and lists its partitions in order.
fn check_manifest(m: &Manifest, job: &str) -> Result<(), String> {
    if m.job != job {
        return Err(format!(
            "its manifest belongs to job `{}`, not `{job}`",
            m.job
        ));
    }
    if let Some((i, p)) = m
        .partitions
        .iter()
        .enumerate()
        .find(|(i, p)| p.partition != *i)
    {
        return Err(format!(
            "manifest entry {i} is for partition {}; partitions must be listed in order",
            p.partition
        ));
    }
    Ok(())
}

/// One partition's operators (state and timers) and sink state, every
/// blob checked.
fn restore_partition(
    blobs: &Blobs<'_>,
    t: &manifest::PartitionEntry,
    checkpoint: u64,
) -> Result<RestoredPartition> {
    let mut operators = Vec::new();
    for op in &t.operators {
        let state = blobs.fetch(&op.state)?;
        let timers = manifest::decode_timers(&blobs.fetch(&op.timers)?)
            .map_err(|e| blobs.error(format!("blob {}: {e}", op.timers.path)))?;
        operators.push(RestoredOperator {
            name: op.name.clone(),
            digest: op.plugin_digest.clone(),
            state_version: op.state_version,
            state,
            timers,
        });
    }
    let sink = match &t.sink {
        Some(state) => Some(RestoredSink {
            checkpoint,
            state: state.clone(),
            blob: t.sink_blob.as_ref().map(|b| blobs.fetch(b)).transpose()?,
        }),
        None => None,
    };
    Ok(RestoredPartition {
        watermark: t.watermark,
        source: t.source.clone(),
        sink,
        operators,
    })
}

/// The blobs of one checkpoint folder.
struct Blobs<'a> {
    store: &'a StateStore,
    /// Key prefix of the folder (empty: the store's root).
    folder: &'a str,
    /// For errors.
    location: &'a str,
}

impl Blobs<'_> {
    fn error(&self, detail: String) -> Error {
        Error::Savepoint {
            location: self.location.to_string(),
            detail,
        }
    }

    /// The bytes of `blob`, refused if missing, of another size or with
    /// another SHA-256 than the manifest says.
    fn fetch(&self, blob: &BlobRef) -> Result<Bytes> {
        let key = if self.folder.is_empty() {
            blob.path.clone()
        } else {
            format!("{}/{}", self.folder, blob.path)
        };
        let bytes = self
            .store
            .get(&key)?
            .ok_or_else(|| self.error(format!("blob {} is missing", blob.path)))?;
        if bytes.len() as u64 != blob.size {
            return Err(self.error(format!(
                "blob {} has {} bytes, the manifest says {} (truncated or replaced)",
                blob.path,
                bytes.len(),
                blob.size
            )));
        }
        if sha256_hex(&bytes) != blob.sha256 {
            return Err(self.error(format!(
                "blob {} is corrupt: its SHA-256 does not match the manifest",
                blob.path
            )));
        }
        Ok(bytes)
    }
}
