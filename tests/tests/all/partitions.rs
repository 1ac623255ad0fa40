//! Partitions as the unit of state: a savepoint restores into another
//! parallelism when the partition count is the same (partitions move
//! between threads), a file job's into another partition count too (its
//! state split by key, see `rescale.rs`), and savepoints written by
//! manifest format 1 (before partitions) still restore.

use std::path::Path;

use serde_json::{Value, json};
use weir::checkpoint::manifest::{self, Kind};
use weir_tests::{artifacts, assert_same_output};

use crate::savepoints::{Job, savepoint_then_kill};

pub fn set_threads(job: &Job, parallelism: usize, partitions: Option<usize>) {
    let text = std::fs::read_to_string(job.file()).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("parallelism") && !l.starts_with("partitions"))
        .map(str::to_string)
        .collect();
    let at = lines.iter().position(|l| l.starts_with("name")).unwrap() + 1;
    lines.insert(at, format!("parallelism = {parallelism}"));
    if let Some(p) = partitions {
        lines.insert(at + 1, format!("partitions = {p}"));
    }
    std::fs::write(job.file(), lines.join("\n")).unwrap();
}

/// `weir run --from-savepoint mid`; returns what it printed.
fn restore_mid(job: &Job) -> String {
    job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "mid",
    ])
}

pub fn partitions_written(out: &Path) -> Vec<usize> {
    let mut p: Vec<usize> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("part-")?.get(..4)?.parse().ok()
        })
        .collect();
    p.sort();
    p.dedup();
    p
}

#[test]
fn a_savepoint_restores_into_another_parallelism_with_the_same_partitions() {
    let job = Job::new("parts-move", 3_000_000, artifacts::STATE_MACHINE, 2, "");
    set_threads(&job, 2, Some(4));
    let expected = job.reference();
    savepoint_then_kill(&job);
    let sp = manifest::select(&job.store(), &job.name, "mid")
        .unwrap()
        .manifest;
    assert_eq!((sp.parallelism, sp.partitions.len()), (2, 4));
    assert!(sp.source.position["file"].is_string(), "taken mid-input");

    // Three threads now: partitions 0 and 3 share thread 0.
    set_threads(&job, 3, Some(4));
    let said = restore_mid(&job);
    assert!(said.contains("restored from"), "{said}");
    assert_same_output(
        &job.output(),
        &expected,
        "output after restoring on 3 threads",
    );
    assert_eq!(partitions_written(&job.root.join("out")), vec![0, 1, 2, 3]);

    // One thread runs all four.
    set_threads(&job, 1, Some(4));
    restore_mid(&job);
    assert_same_output(
        &job.output(),
        &expected,
        "output after restoring on 1 thread",
    );
}

#[test]
fn another_partition_count_rescales_a_file_jobs_savepoint() {
    let job = Job::new("parts-rescaled", 3_000_000, artifacts::STATE_MACHINE, 2, "");
    let expected = job.reference();
    savepoint_then_kill(&job);
    // Three threads, the partitions following: the two partitions' state
    // is split by key onto three.
    set_threads(&job, 3, None);
    restore_mid(&job);
    assert_same_output(
        &job.output(),
        &expected,
        "output after restoring 2 partitions at 3",
    );
    assert_eq!(partitions_written(&job.root.join("out")), vec![0, 1, 2]);
}

/// Rewrite a format-2 savepoint the way the format-1 writer laid it out:
/// blobs under `task-NNNN/`, one typed file position, per-task entries
/// with the file sink's typed state.
fn to_format_1(folder: &Path) {
    let path = folder.join("manifest.json");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(m["format"], 2);
    let mut tasks = Vec::new();
    for p in m["partitions"].as_array().unwrap() {
        let t = p["partition"].as_u64().unwrap();
        let from = folder.join(format!("partition-{t:04}"));
        let to = folder.join(format!("task-{t:04}"));
        std::fs::rename(&from, &to).unwrap();
        let mut operators = p["operators"].clone();
        for op in operators.as_array_mut().unwrap() {
            for blob in ["state", "timers"] {
                let old = op[blob]["path"].as_str().unwrap().to_string();
                op[blob]["path"] = json!(old.replace("partition-", "task-"));
            }
        }
        tasks.push(json!({
            "task": t,
            "watermark": p["watermark"],
            "sink": p["sink"],
            "operators": operators,
        }));
    }
    let v1 = json!({
        "format": 1,
        "job": m["job"],
        "kind": m["kind"],
        "id": m["id"],
        "name": m["name"],
        "wall_time_ms": m["wall_time_ms"],
        "watermark": m["watermark"],
        "max_event_time": m["max_event_time"],
        "host_version": "0.1.0",
        "wit_version": "0.1.0",
        "parallelism": m["parallelism"],
        "source": m["source"]["position"],
        "tasks": tasks,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&v1).unwrap()).unwrap();
}

#[test]
fn a_format_1_savepoint_restores() {
    let job = Job::new("format-1", 3_000_000, artifacts::STATE_MACHINE, 2, "");
    let expected = job.reference();
    savepoint_then_kill(&job);
    let found = manifest::select(&job.store(), &job.name, "mid").unwrap();
    let folder = job.root.join("weir-state").join(&found.folder);
    to_format_1(&folder);
    let text = std::fs::read_to_string(folder.join("manifest.json")).unwrap();
    assert!(text.contains("\"format\": 1") && text.contains("task-0001/op-0-op.state"));

    // Read as format 2: the file position and the sink state come back.
    let again = manifest::select(&job.store(), &job.name, "mid")
        .unwrap()
        .manifest;
    assert_eq!(again.kind, Kind::Savepoint);
    assert_eq!(again.source.connector, "files");
    assert_eq!(again.source.position, found.manifest.source.position);
    assert_eq!(again.partitions.len(), 2);
    let listed = job.run_ok(&["savepoint", "list", job.file().to_str().unwrap()]);
    assert!(
        listed.contains("mid") && listed.contains(".csv@"),
        "{listed}"
    );

    job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "mid",
    ]);
    assert_same_output(
        &job.output(),
        &expected,
        "output after restoring a format-1 savepoint",
    );
}
