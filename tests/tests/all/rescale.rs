//! Rescaling a savepoint: a file job restored with another number of
//! partitions gets each key's state in the partition that routes the key
//! now, and its output is still the DFA's over the whole input; what
//! cannot be split is refused, saying why, before anything changes.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use weir::checkpoint::manifest::{self, Found, Kind};
use weir_tests::{artifacts, assert_same_output, reference_alerts};

use crate::partitions::{partitions_written, set_threads};
use crate::savepoints::Job;

/// Event-time savepoints every 100 s of event time (1 event per ms).
const SCHEDULE: &str = "[checkpoints]\ninterval_ms = 0\nsavepoint_every_event_time_ms = 100000\n";

/// A job running `plugin` at `parallelism`, run over its whole input once,
/// and its first event-time savepoint (taken in the middle of the input).
fn job_with_mid_savepoint(name: &str, plugin: &str, parallelism: usize) -> (Job, Found) {
    let job = Job::new(name, 300_000, plugin, parallelism, SCHEDULE);
    job.run_ok(&["run", job.file().to_str().unwrap()]);
    let mut all = manifest::list(&job.store(), &job.name).unwrap();
    all.retain(|f| f.manifest.kind == Kind::Savepoint);
    let first = all.into_iter().next().expect("an event-time savepoint");
    assert_eq!(first.manifest.partitions.len(), parallelism);
    assert!(
        first.manifest.source.position["file"].is_string(),
        "the savepoint is in the middle of the input"
    );
    assert!(first.manifest.state_bytes() > 0);
    (job, first)
}

/// `weir run --from-savepoint NAME` with info logs; its standard error.
fn restore(job: &Job, name: &str) -> String {
    let out = job
        .weir()
        .env("WEIR_LOG", "info")
        .args([
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            name,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the restore failed: {err}");
    err
}

#[test]
fn a_savepoint_of_4_partitions_restores_at_2_and_8_with_the_dfas_output() {
    let (job, sp) = job_with_mid_savepoint("rescale", artifacts::STATE_MACHINE, 4);
    let expected = reference_alerts(&job.root.join("events"));
    assert!(expected.len() > 1000);
    assert_same_output(&job.output(), &expected, "output of the first run");
    let name = sp.manifest.name.as_str();

    for threads in [2, 8] {
        // The partitions follow the parallelism.
        set_threads(&job, threads, None);
        let said = restore(&job, name);
        assert!(
            said.contains(&format!("rescaled from 4 to {threads} partitions")),
            "{said}"
        );
        assert_same_output(
            &job.output(),
            &expected,
            &format!("output after restoring at {threads} partitions"),
        );
        // The part files the savepoint covers stay (partitions 0-3), and
        // every new partition wrote its own.
        let written = partitions_written(&job.root.join("out"));
        assert_eq!(written, (0..threads.max(4)).collect::<Vec<_>>());
    }

    // Another parallelism with the savepoint's partitions: they just move.
    set_threads(&job, 3, Some(4));
    let said = restore(&job, name);
    assert!(!said.contains("rescaled"), "{said}");
    assert_same_output(
        &job.output(),
        &expected,
        "output after restoring 4 partitions on 3 threads",
    );
}

#[test]
fn pending_timers_move_with_their_keys() {
    let (job, sp) = job_with_mid_savepoint("rescale-timers", artifacts::SESSION, 4);
    let timers: u64 = sp
        .manifest
        .partitions
        .iter()
        .flat_map(|p| &p.operators)
        .map(|o| o.timer_count)
        .sum();
    assert!(timers > 0, "timers were pending at the savepoint");
    // Sessions are per key and decided on event time: the output of any
    // partitioning is the uninterrupted run's.
    let expected = job.output();
    assert!(!expected.is_empty());
    for threads in [2, 8] {
        set_threads(&job, threads, None);
        let said = restore(&job, &sp.manifest.name);
        assert!(said.contains("rescaled from 4 to"), "{said}");
        assert_same_output(
            &job.output(),
            &expected,
            &format!("sessions after restoring at {threads} partitions"),
        );
    }
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn state_the_host_cannot_read_by_key_is_refused_before_anything_changes() {
    let (job, sp) = job_with_mid_savepoint("rescale-refused", artifacts::STATE_MACHINE, 2);
    // Partition 1's state becomes an opaque snapshot (not an envelope), as
    // a plugin that writes its own format leaves it; the manifest is made
    // to match, so only the split can refuse it.
    let folder = job.root.join("weir-state").join(&sp.folder);
    let opaque = b"an opaque snapshot".to_vec();
    let path = folder.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let blob = &mut m["partitions"][1]["operators"][0]["state"];
    std::fs::write(folder.join(blob["path"].as_str().unwrap()), &opaque).unwrap();
    blob["size"] = opaque.len().into();
    blob["sha256"] = weir_hex(&Sha256::digest(&opaque)).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let before = (
        snapshot(&job.root.join("out")),
        snapshot(&job.root.join("weir-state")),
    );

    set_threads(&job, 3, None);
    let out = job
        .weir()
        .args([
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            &sp.manifest.name,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for says in [
        "it holds 2 partitions and this job has 3",
        "operator `op`",
        "not a keyed state envelope",
        "partitions = 2",
    ] {
        assert!(err.contains(says), "{says:?} in {err}");
    }
    let after = (
        snapshot(&job.root.join("out")),
        snapshot(&job.root.join("weir-state")),
    );
    assert!(
        before == after,
        "a refused restore changed the output or the store"
    );
}

fn weir_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
