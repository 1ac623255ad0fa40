//! The manifest: the commit point of a checkpoint or savepoint, written last.
//! It names every blob with its size and SHA-256, so a restore can refuse a
//! damaged savepoint before touching any state. Also: the timer blob
//! encoding, and finding a checkpoint by name, `latest` or `before:TIME`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::store::StateStore;
use crate::batch::Timer;
use crate::digest::sha256_hex;
use crate::{Error, Result};

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

/// Encode timers: count (u64 LE), then per timer time (i64 LE), key length
/// (u32 LE) and key.
pub fn encode_timers<'a>(
    timers: impl ExactSizeIterator<Item = (i64, &'a [u8])> + Clone,
) -> Vec<u8> {
    let size: usize = timers.clone().map(|(_, key)| 12 + key.len()).sum();
    let mut out = Vec::with_capacity(8 + size);
    out.extend_from_slice(&(timers.len() as u64).to_le_bytes());
    for (time, key) in timers {
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

/// Decode [`encode_timers`] output.
pub fn decode_timers(bytes: &[u8]) -> Result<Vec<Timer>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = bytes
            .get(at..at + n)
            .ok_or_else(|| "timer blob truncated".to_string())?;
        at += n;
        Ok(s)
    };
    let count = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad count")?);
    let mut timers = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let time = i64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad time")?);
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad length")?) as usize;
        timers.push(Timer {
            key: take(len)?.to_vec(),
            time,
        });
    }
    if at != bytes.len() {
        return Err("trailing bytes after the timers".into());
    }
    Ok(timers)
}

/// A manifest with the folder it was found in.
#[derive(Debug, Clone)]
pub struct Found {
    /// Folder (key prefix) in the store.
    pub folder: String,
    /// The manifest.
    pub manifest: Manifest,
}

/// Read and parse a manifest at `folder/manifest.json`.
pub fn read(store: &StateStore, folder: &str) -> Result<Option<Manifest>> {
    let Some(bytes) = store.get(&format!("{folder}/manifest.json"))? else {
        return Ok(None);
    };
    let location = || format!("{}/{folder}", store.url());
    let m = parse(&bytes).map_err(|detail| Error::Savepoint {
        location: location(),
        detail,
    })?;
    Ok(Some(m))
}

/// Parse a manifest of format 1 or 2 (format 1 converted on read).
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let Format { format } =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest.json does not parse: {e}"))?;
    let parsed = match format {
        1 => serde_json::from_slice::<v1::Manifest>(bytes).map(v1::Manifest::convert),
        MANIFEST_FORMAT => serde_json::from_slice::<Manifest>(bytes),
        other => {
            return Err(format!(
                "manifest format {other} (this host reads formats 1 and {MANIFEST_FORMAT})"
            ));
        }
    };
    parsed.map_err(|e| format!("manifest.json does not parse: {e}"))
}

/// Manifest format 1 (Weir 0.1 before partitions): one file position and
/// one entry per task, with the file sink's state typed. Read only.
mod v1 {
    use serde::Deserialize;
    use serde_json::json;

    use super::{Kind, OperatorEntry};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Manifest {
        format: u32,
        job: String,
        kind: Kind,
        id: u64,
        name: String,
        wall_time_ms: i64,
        watermark: i64,
        max_event_time: i64,
        host_version: String,
        wit_version: String,
        parallelism: usize,
        source: serde_json::Value,
        tasks: Vec<TaskEntry>,
    }

    #[derive(Deserialize)]
    struct TaskEntry {
        task: usize,
        watermark: i64,
        sink: Option<serde_json::Value>,
        operators: Vec<OperatorEntry>,
    }

    impl Manifest {
        /// Format 1 ran files only, one partition per task: the file
        /// position becomes the file source's position, each task a
        /// partition, its sink state the file sink's opaque state (same
        /// shape).
        pub fn convert(self) -> super::Manifest {
            let _ = self.format;
            super::Manifest {
                format: super::MANIFEST_FORMAT,
                job: self.job,
                kind: self.kind,
                id: self.id,
                name: self.name,
                wall_time_ms: self.wall_time_ms,
                watermark: self.watermark,
                max_event_time: self.max_event_time,
                host_version: self.host_version,
                wit_version: self.wit_version,
                parallelism: self.parallelism,
                source: super::SourcePosition {
                    connector: "files".into(),
                    position: if self.source["file"].is_null() {
                        json!(null)
                    } else {
                        self.source
                    },
                },
                partitions: self
                    .tasks
                    .into_iter()
                    .map(|t| super::PartitionEntry {
                        partition: t.task,
                        watermark: t.watermark,
                        source: json!(null),
                        sink: t.sink,
                        sink_blob: None,
                        operators: t.operators,
                    })
                    .collect(),
            }
        }
    }
}

/// Every complete checkpoint and savepoint of `job`, oldest first. A folder
/// without a manifest is an incomplete checkpoint and is not listed.
pub fn list(store: &StateStore, job: &str) -> Result<Vec<Found>> {
    let (found, corrupt) = list_all(store, job)?;
    for c in &corrupt {
        tracing::warn!(folder = %c.folder, "skipping a corrupt manifest: {}", c.detail);
    }
    Ok(found)
}

/// A checkpoint or savepoint whose manifest does not parse: listed as
/// corrupt, skipped by `latest`, and deletable.
#[derive(Debug, Clone)]
pub struct Corrupt {
    /// Its folder in the store.
    pub folder: String,
    /// What is wrong.
    pub detail: String,
}

/// Every checkpoint and savepoint of `job`, oldest first, and those whose
/// manifest is corrupt.
pub fn list_all(store: &StateStore, job: &str) -> Result<(Vec<Found>, Vec<Corrupt>)> {
    let mut found = Vec::new();
    let mut corrupt = Vec::new();
    for (key, _) in store.list(&format!("jobs/{job}"))? {
        let Some(folder) = key.strip_suffix("/manifest.json") else {
            continue;
        };
        match read(store, folder) {
            Ok(Some(m)) => found.push(Found {
                folder: folder.to_string(),
                manifest: m,
            }),
            Ok(None) => {}
            Err(Error::Savepoint { detail, .. }) => corrupt.push(Corrupt {
                folder: folder.to_string(),
                detail,
            }),
            Err(e) => return Err(e),
        }
    }
    found.sort_by_key(|f| (f.manifest.id, f.manifest.wall_time_ms));
    Ok((found, corrupt))
}

/// The ids of every checkpoint folder of `job`, complete or not.
pub fn checkpoint_folder_ids(store: &StateStore, job: &str) -> Result<Vec<u64>> {
    let prefix = format!("jobs/{job}/checkpoints/");
    Ok(store
        .list(&prefix)?
        .iter()
        .filter_map(|(key, _)| key.strip_prefix(&prefix)?.split('/').next()?.parse().ok())
        .collect())
}

/// Pick a checkpoint or savepoint of `job`: a savepoint name, a checkpoint
/// id, `latest` (newest complete one of either kind) or `before:TIME`
/// (newest whose watermark is before TIME: ms since the epoch or
/// `YYYY-MM-DDTHH:MM:SS[Z]`).
pub fn select(store: &StateStore, job: &str, selector: &str) -> Result<Found> {
    let (all, corrupt) = list_all(store, job)?;
    if let Some(c) = corrupt.iter().find(|c| {
        c.folder.ends_with(&format!("/savepoints/{selector}"))
            || c.folder.ends_with(&format!("/checkpoints/{selector}"))
    }) {
        return Err(Error::Savepoint {
            location: format!("{}/{}", store.url(), c.folder),
            detail: format!(
                "its manifest is corrupt ({}); restore another one, or delete it with \
                 `weir savepoint delete`",
                c.detail
            ),
        });
    }
    for c in &corrupt {
        tracing::warn!(folder = %c.folder, "skipping a corrupt manifest: {}", c.detail);
    }
    let none = |what: String| Error::Savepoint {
        location: format!("{}/jobs/{job}", store.url()),
        detail: what,
    };
    if selector == "latest" {
        return all
            .into_iter()
            .last()
            .ok_or_else(|| none("no complete checkpoint or savepoint".into()));
    }
    if let Some(t) = selector.strip_prefix("before:") {
        let time = parse_time(t)
            .ok_or_else(|| none(format!("`{t}` is not a time (ms or YYYY-MM-DDTHH:MM:SSZ)")))?;
        return all
            .into_iter()
            .filter(|f| f.manifest.watermark < time)
            .max_by_key(|f| (f.manifest.watermark, f.manifest.id))
            .ok_or_else(|| {
                none(format!(
                    "no checkpoint or savepoint with event time before {t}"
                ))
            });
    }
    let mut named: Vec<Found> = all
        .into_iter()
        .filter(|f| {
            (f.manifest.kind == Kind::Savepoint && f.manifest.name == selector)
                || (f.manifest.kind == Kind::Checkpoint
                    && selector.parse::<u64>().ok() == Some(f.manifest.id))
        })
        .collect();
    named.sort_by_key(|f| f.manifest.kind == Kind::Savepoint);
    named
        .pop()
        .ok_or_else(|| none(format!("no savepoint or checkpoint named `{selector}`")))
}

/// Milliseconds since the epoch, or a UTC date-time `YYYY-MM-DDTHH:MM:SS`
/// (optional `Z`, optional fraction ignored).
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (
        t.next()??,
        t.next().unwrap_or(Some(0))?,
        t.next().unwrap_or(Some(0))?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

/// Format ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_time(ms: i64) -> String {
    if ms == i64::MIN {
        return "-".into();
    }
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_round_trip_and_refuse_damage() {
        let t = [
            Timer {
                key: b"a".to_vec(),
                time: 5,
            },
            Timer {
                key: b"bb".to_vec(),
                time: -1,
            },
        ];
        let bytes = encode_timers(t.iter().map(|t| (t.time, &t.key[..])));
        let back = decode_timers(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[1].key.as_slice(), back[1].time), (&b"bb"[..], -1));
        assert!(decode_timers(&bytes[..bytes.len() - 1]).is_err());
    }

    /// A format-1 manifest as the 0.1 writer (`serde_json::to_vec_pretty`
    /// of its `Manifest`, commit b221dc6) wrote it: one file position, one
    /// entry per task with the file sink's typed state, blobs under
    /// `task-NNNN/`.
    const FORMAT_1_MID_FILE: &str = r#"{
  "format": 1,
  "job": "state-machine",
  "kind": "savepoint",
  "id": 7,
  "name": "mid",
  "wall_time_ms": 1764012345678,
  "watermark": 1700000095000,
  "max_event_time": 1700000099999,
  "host_version": "0.1.0",
  "wit_version": "0.1.0",
  "parallelism": 2,
  "source": {
    "file": "events-000001.csv",
    "offset": 8388608,
    "line": 131072
  },
  "tasks": [
    {
      "task": 0,
      "watermark": 1700000095000,
      "sink": {
        "next_seq": 3,
        "pending": [
          "part-0000-000002.jsonl"
        ]
      },
      "operators": [
        {
          "name": "state-machine",
          "plugin_digest": "5f1d3c0e9a7b2468ace013579bdf02468ace013579bdf02468ace013579bdf0a",
          "state_version": 1,
          "state": {
            "path": "task-0000/op-0-state-machine.state",
            "size": 40960,
            "sha256": "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
          },
          "timers": {
            "path": "task-0000/op-0-state-machine.timers",
            "size": 8,
            "sha256": "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
          },
          "timer_count": 0
        }
      ]
    },
    {
      "task": 1,
      "watermark": 1700000094000,
      "sink": {
        "next_seq": 2,
        "pending": []
      },
      "operators": [
        {
          "name": "state-machine",
          "plugin_digest": "5f1d3c0e9a7b2468ace013579bdf02468ace013579bdf02468ace013579bdf0a",
          "state_version": 1,
          "state": {
            "path": "task-0001/op-0-state-machine.state",
            "size": 39936,
            "sha256": "f9e8d7c6b5a4938271605f4e3d2c1b0af9e8d7c6b5a4938271605f4e3d2c1b0a"
          },
          "timers": {
            "path": "task-0001/op-0-state-machine.timers",
            "size": 29,
            "sha256": "1111111111111111111111111111111111111111111111111111111111111111"
          },
          "timer_count": 1
        }
      ]
    }
  ]
}"#;

    /// The same writer at the start of the input (no file yet: `file`
    /// null), with a sink that records nothing (`sink` null).
    const FORMAT_1_START: &str = r#"{
  "format": 1,
  "job": "state-machine",
  "kind": "checkpoint",
  "id": 1,
  "name": "0000000001",
  "wall_time_ms": 1764012340000,
  "watermark": -9223372036854775808,
  "max_event_time": -9223372036854775808,
  "host_version": "0.1.0",
  "wit_version": "0.1.0",
  "parallelism": 1,
  "source": {
    "file": null,
    "offset": 0,
    "line": 0
  },
  "tasks": [
    {
      "task": 0,
      "watermark": -9223372036854775808,
      "sink": null,
      "operators": [
        {
          "name": "state-machine",
          "plugin_digest": "5f1d3c0e9a7b2468ace013579bdf02468ace013579bdf02468ace013579bdf0a",
          "state_version": 1,
          "state": {
            "path": "task-0000/op-0-state-machine.state",
            "size": 24,
            "sha256": "2222222222222222222222222222222222222222222222222222222222222222"
          },
          "timers": {
            "path": "task-0000/op-0-state-machine.timers",
            "size": 8,
            "sha256": "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
          },
          "timer_count": 0
        }
      ]
    }
  ]
}"#;

    #[test]
    fn a_format_1_manifest_is_read_as_format_2() {
        let m = parse(FORMAT_1_MID_FILE.as_bytes()).unwrap();
        assert_eq!(m.format, MANIFEST_FORMAT);
        assert_eq!(
            (m.job.as_str(), m.kind, m.id),
            ("state-machine", Kind::Savepoint, 7)
        );
        assert_eq!((m.name.as_str(), m.parallelism), ("mid", 2));
        assert_eq!(
            (m.watermark, m.max_event_time),
            (1_700_000_095_000, 1_700_000_099_999)
        );
        // The one file position becomes the file source's own position.
        assert_eq!(m.source.connector, "files");
        assert_eq!(
            m.source.position,
            serde_json::json!({"file": "events-000001.csv", "offset": 8388608, "line": 131072})
        );
        // Each task becomes the partition of the same index, with no
        // per-partition source position; its file sink state is kept
        // as the sink's opaque state.
        assert_eq!(m.partitions.len(), 2);
        let sinks: Vec<_> = m.partitions.iter().map(|p| p.sink.clone()).collect();
        assert_eq!(
            sinks,
            [
                Some(serde_json::json!({"next_seq": 3, "pending": ["part-0000-000002.jsonl"]})),
                Some(serde_json::json!({"next_seq": 2, "pending": []})),
            ]
        );
        for (i, p) in m.partitions.iter().enumerate() {
            assert_eq!(p.partition, i);
            assert_eq!(p.source, Value::Null);
            assert_eq!(p.sink_blob, None);
            // Blobs stay where the old writer put them.
            let op = &p.operators[0];
            assert_eq!(
                op.state.path,
                format!("task-{i:04}/op-0-state-machine.state")
            );
            assert_eq!(
                op.timers.path,
                format!("task-{i:04}/op-0-state-machine.timers")
            );
        }
        assert_eq!(m.partitions[1].watermark, 1_700_000_094_000);
        let op = &m.partitions[1].operators[0];
        assert_eq!(
            (op.state.size, op.state_version, op.timer_count),
            (39936, 1, 1)
        );
        assert_eq!(op.timers.sha256, "1".repeat(64));
        assert_eq!(m.state_bytes(), 40960 + 8 + 39936 + 29);
        // Written again, it is a format-2 manifest that reads back equal.
        let again = serde_json::to_vec_pretty(&m).unwrap();
        assert_eq!(parse(&again).unwrap(), m);

        let start = parse(FORMAT_1_START.as_bytes()).unwrap();
        assert_eq!(
            (start.kind, start.id, start.name.as_str()),
            (Kind::Checkpoint, 1, "0000000001")
        );
        // No file yet: no position (the file source's start).
        assert_eq!(start.source.connector, "files");
        assert_eq!(start.source.position, Value::Null);
        assert_eq!(start.partitions.len(), 1);
        let p = &start.partitions[0];
        assert_eq!(
            (p.partition, p.watermark, p.sink.clone()),
            (0, i64::MIN, None)
        );
        assert_eq!(
            p.operators[0].state.path,
            "task-0000/op-0-state-machine.state"
        );
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_time("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_time("yesterday"), None);
    }
}
