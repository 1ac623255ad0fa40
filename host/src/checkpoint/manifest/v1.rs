//! Manifest format 1 (Weir 0.1 before partitions): one file position and
//! one entry per task, with the file sink's state typed. Read only.

use serde::Deserialize;
use serde_json::json;

use super::{Kind, OperatorEntry};

/// A format-1 manifest, as the 0.1 host wrote it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// 1.
    format: u32,
    /// Job name.
    job: String,
    /// Checkpoint or savepoint.
    kind: Kind,
    /// Checkpoint id.
    id: u64,
    /// Savepoint name, or the checkpoint id as text.
    name: String,
    /// Wall time of the barrier, ms since the Unix epoch.
    wall_time_ms: i64,
    /// Watermark at the barrier.
    watermark: i64,
    /// Largest event time seen before the barrier.
    max_event_time: i64,
    /// Weir host version.
    host_version: String,
    /// WIT package version.
    wit_version: String,
    /// Worker threads of the run.
    parallelism: usize,
    /// The one file position: `file` (null before the first), `offset`,
    /// `line`.
    source: serde_json::Value,
    /// One entry per task.
    tasks: Vec<TaskEntry>,
}

/// One task of a format-1 manifest (one partition each).
#[derive(Deserialize)]
struct TaskEntry {
    /// Task index.
    task: usize,
    /// The task's watermark at the barrier.
    watermark: i64,
    /// The file sink's state, if it recorded any.
    sink: Option<serde_json::Value>,
    /// Its operators, in chain order.
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{Kind, MANIFEST_FORMAT, parse};

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
}
