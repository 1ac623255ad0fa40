//! Exactly-once Kafka output under what an operator or the cluster does,
//! against the real test broker: a restore whose `[sink]` changed after a
//! crash in the commit window, checkpoint ids of a new store next to
//! markers of an old one, group offsets never ahead of the output, an
//! epoch produced in several transactions and resumed inside, records
//! the producer or the broker refuses going to dead letters, a restore of
//! a checkpoint older than committed output refused, and a broker outage
//! longer than a request timeout.

use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir::checkpoint::store::StateStore;
use weir::config::JobFile;
use weir::job::{RunOptions, run};
use weir_tests::assert_same_output;
use weir_tests::kafka::{
    PrivateBroker, create_topic, create_topic_with, read_values, with_brokers,
};

use crate::kafka::{kafka_job, write_job};
use crate::kafka_faults::{echo_job, produce_values, run_in};
use crate::savepoints::Job;

/// Run the job with `failpoint` armed; it must abort after a checkpoint
/// was durable and before any output was committed to `out`.
fn crash_in_the_commit_window(job: &Job, out: &str, failpoint: &str) {
    let status = job
        .weir()
        .args(["run", job.file().to_str().unwrap()])
        .env("WEIR_FAILPOINT", failpoint)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the failpoint aborted the run");
    assert!(
        !manifest::list(&job.store(), &job.name).unwrap().is_empty(),
        "a checkpoint was durable before the abort"
    );
    if failpoint == "kafka-before-commit" {
        assert!(read_values(out).is_empty(), "nothing committed before");
    }
}

/// Replace the `[sink]` table's `topic = "<from>"` line in the job file.
fn edit_sink(job: &Job, from: &str, to: &str) {
    let text = std::fs::read_to_string(job.file()).unwrap();
    let line = format!("topic = \"{from}\"");
    assert!(text.contains(&line));
    std::fs::write(job.file(), text.replace(&line, to)).unwrap();
}

#[test]
fn a_restore_whose_sink_changed_still_produces_what_the_old_topic_was_promised() {
    for change in ["topic", "delivery"] {
        let (job, expected) = kafka_job(&format!("eo-change-{change}"), 100_000);
        let old = format!("{}-out", job.name);
        let new = format!("{}-out-new", job.name);
        create_topic(&new, 3);
        write_job(&job, 2, &old, "", "interval_ms = 200");
        crash_in_the_commit_window(&job, &old, "kafka-before-commit");
        match change {
            "topic" => edit_sink(&job, &old, &format!("topic = \"{new}\"")),
            _ => edit_sink(
                &job,
                &old,
                &format!("topic = \"{old}\"\ndelivery = \"at-least-once\""),
            ),
        }
        job.run_ok(&[
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            "latest",
        ]);
        let mut both = read_values(&old);
        both.extend(read_values(&new));
        both.sort();
        assert_same_output(
            &both,
            &expected,
            &format!("alerts after a restore that changed the sink's {change}"),
        );
    }
}

#[test]
fn checkpoint_ids_of_a_new_store_are_not_compared_with_another_stores_markers() {
    let (job, expected) = kafka_job("eo-new-store", 300_000);
    let out = format!("{}-out", job.name);
    write_job(&job, 2, &out, "", "interval_ms = 30");
    job.run_ok(&["run", job.file().to_str().unwrap()]);
    let ids: Vec<u64> = manifest::list(&job.store(), &job.name)
        .unwrap()
        .iter()
        .map(|f| f.manifest.id)
        .collect();
    assert!(ids.iter().max() > Some(&2), "several checkpoints: {ids:?}");
    // The same job with an emptied store: ids start at 1 again, below the
    // markers the first run left.
    std::fs::remove_dir_all(job.root.join("weir-state")).unwrap();
    assert!(manifest::list(&job.store(), &job.name).unwrap().is_empty());
    crash_in_the_commit_window(&job, "", "kafka-before-commit-after-2s");
    let restored = job
        .weir()
        .args([
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            "latest",
        ])
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    // Two whole runs over the same input: each alert twice, none lost.
    let mut twice: Vec<String> = expected.iter().chain(&expected).cloned().collect();
    twice.sort();
    let mut got = read_values(&out);
    got.sort();
    assert_same_output(&got, &twice, "two runs' alerts, the second restored");
}

#[test]
fn group_offsets_never_pass_output_that_was_not_produced() {
    // A crash after a checkpoint was durable and before its output was
    // committed, then a fresh run from the group's offsets: it must read
    // again what that output came from.
    let input = "eo-group-in";
    let output = "eo-group-out";
    create_topic(input, 1);
    create_topic(output, 1);
    let expected = produce_values(input, "g", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let text = echo_job(
        "eo-group",
        input,
        output,
        "until = \"latest\"\ngroup_id = \"eo-group\"\nstart = \"committed\"",
        "",
    );
    std::fs::write(dir.path().join("job.toml"), &text).unwrap();
    // `--fresh`: a run that starts over from the group's offsets, not a
    // restore of the checkpoint the crashed run left.
    let weir = |failpoint: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.current_dir(dir.path())
            .env("WEIR_RUN_DIR", dir.path().join("run"))
            .env("WEIR_LOG", "warn")
            .args(["run", "job.toml", "--fresh"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(f) = failpoint {
            c.env("WEIR_FAILPOINT", f);
        }
        c.output().unwrap()
    };
    let crashed = weir(Some("kafka-before-commit-after-2s"));
    assert!(!crashed.status.success(), "the failpoint aborted the run");
    let fresh = weir(None);
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let mut got = read_values(output);
    got.sort();
    got.dedup();
    assert_eq!(got, expected, "every record's output, at least once");
}

#[test]
fn an_epoch_in_several_transactions_resumes_inside_after_a_crash() {
    let input = "eo-split-in";
    let output = "eo-split-out";
    create_topic(input, 1);
    create_topic(output, 1);
    let expected = produce_values(input, "a-record-of-some-length", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let text = echo_job(
        "eo-split",
        input,
        output,
        "until = \"latest\"",
        "transaction_bytes = 4096",
    )
    .replace("interval_ms = 100", "interval_ms = 5000");
    std::fs::write(dir.path().join("job.toml"), &text).unwrap();
    let weir = |args: &[&str], failpoint: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.current_dir(dir.path())
            .env("WEIR_RUN_DIR", dir.path().join("run"))
            .env("WEIR_LOG", "warn")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(f) = failpoint {
            c.env("WEIR_FAILPOINT", f);
        }
        c.output().unwrap()
    };
    // The whole input is one epoch (one checkpoint, at the end), about
    // 900 KiB: some 200 transactions. The crash comes before the 50th
    // commit, inside the epoch.
    let crashed = weir(&["run", "job.toml"], Some("kafka-before-commit:50"));
    assert!(!crashed.status.success(), "the failpoint aborted the run");
    let part = read_values(output);
    assert!(
        !part.is_empty() && part.len() < expected.len(),
        "part of the epoch was committed: {} of {}",
        part.len(),
        expected.len()
    );
    let resumed = weir(&["run", "job.toml", "--from-savepoint", "latest"], None);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let mut got = read_values(output);
    got.sort();
    assert_eq!(got, expected, "each record once, across the crash");
}

/// Job `name` echoes ten small records and a 2 MiB one (emitted in an
/// epoch: it used to fail the commit on every restart) from `<name>-in`
/// into `<name>-out`, a topic that takes 1 MiB at most, with `sink` added
/// to its `[sink]` table: the big record goes to the dead letters with the
/// reason, the rest is produced once, and the job goes on.
fn a_refused_record_goes_to_dead_letters(name: &str, sink: &str) {
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    create_topic_with(&input, 1, &[("max.message.bytes", "8388608")]);
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), format!("v-{i}").into_bytes()))
        .collect();
    records.insert(5, ("big".into(), vec![b'x'; 2 << 20]));
    crate::kafka_faults::produce_large(&input, &records);
    let mut expected: Vec<String> = (0..10).map(|i| format!("k{i}=v-{i}")).collect();
    expected.sort();
    create_topic_with(&output, 1, &[("max.message.bytes", "1048576")]);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[dead_letter]\npath = \"dead-letters.jsonl\"\n",
        echo_job(name, &input, &output, "until = \"latest\"", sink)
    );
    let report =
        run_in(dir.path(), name, &text).unwrap_or_else(|e| panic!("{name}: the job goes on: {e}"));
    assert_eq!(report.totals.records_read, 11);
    assert_eq!(read_values(&output), expected, "{name}");
    let dead = weir_tests::read_dead_letters(&dir.path().join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1, "{name}: {dead:?}");
    assert_eq!(dead[0]["stage"], "sink");
    assert_eq!(dead[0]["key"], "big");
    let reason = dead[0]["reason"].as_str().unwrap().to_lowercase();
    assert!(reason.contains("too large"), "{name}: {reason}");
}

#[test]
fn exactly_once_records_the_topic_refuses_go_to_dead_letters_and_the_job_goes_on() {
    // Refused by the producer before sending (its default 1 MB limit).
    a_refused_record_goes_to_dead_letters("eo-refused", "");
}

#[test]
fn exactly_once_records_the_broker_refuses_go_to_dead_letters_and_the_job_goes_on() {
    // The producer's limit raised above the topic's: the broker refuses the
    // record, which makes the transaction abortable; it is aborted at once
    // and produced again without the record.
    a_refused_record_goes_to_dead_letters(
        "eo-broker-refused",
        "properties = { \"message.max.bytes\" = \"8388608\" }",
    );
}

#[test]
fn restoring_a_checkpoint_older_than_committed_output_is_refused_and_writes_nothing() {
    // Two bounded runs: the second one's epochs after the first run's final
    // checkpoint hold output. Restoring that checkpoint could only write
    // its later records again: refused, before anything is produced.
    let input = "eo-older-in";
    let output = "eo-older-out";
    create_topic(input, 1);
    create_topic(output, 1);
    let dir = tempfile::tempdir().unwrap();
    let text = echo_job("eo-older", input, output, "until = \"latest\"", "");
    let plan = JobFile::parse(&text)
        .unwrap()
        .resolve("eo-older", dir.path())
        .unwrap();
    let store = StateStore::open(&plan.checkpoint.clone().unwrap().store, dir.path()).unwrap();
    let mut expected = produce_values(input, "first", 200);
    run(&plan, RunOptions::default()).unwrap();
    let first = manifest::list(&store, "eo-older")
        .unwrap()
        .into_iter()
        .map(|f| f.manifest.id)
        .max()
        .expect("the first run's final checkpoint");
    expected.extend(produce_values(input, "second", 200));
    expected.sort();
    let resumed = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    run(&plan, resumed).unwrap();
    let mut got = read_values(output);
    got.sort();
    assert_eq!(got, expected, "each record once over both runs");

    let older = RunOptions {
        from_savepoint: Some(first.to_string()),
        ..RunOptions::default()
    };
    let Err(err) = run(&plan, older) else {
        panic!("a restore of checkpoint {first} under later output ran");
    };
    let err = err.to_string();
    assert!(err.contains("already committed the output"), "{err}");
    let mut after = read_values(output);
    after.sort();
    assert_eq!(after, expected, "nothing written by the refused restore");
}

#[test]
fn an_exactly_once_job_rides_out_a_broker_outage_longer_than_a_request_timeout() {
    let broker = PrivateBroker::start(9392);
    with_brokers(&broker.brokers, || {
        let (job, expected) = kafka_job("eo-outage", 300_000);
        let out = format!("{}-out", job.name);
        write_job(&job, 1, &out, "", "interval_ms = 200");
        let mut child = job.spawn(None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while read_values(&out).is_empty() {
            assert!(Instant::now() < deadline, "no output within 60 s");
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Longer than the 30 s a commit used to wait.
        broker.pause(Duration::from_secs(45));
        let status = child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        assert!(status.success(), "the run rode the outage out: {err}");
        assert_same_output(&read_values(&out), &expected, "alerts across an outage");
    });
}

#[test]
fn exactly_once_without_periodic_checkpoints_is_refused_saying_what_to_set() {
    let text = echo_job("eo-no-interval", "in", "out", "", "")
        .replace("interval_ms = 100", "interval_ms = 0");
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = run_in(dir.path(), "eo-no-interval", &text) else {
        panic!("exactly once with interval_ms = 0 ran");
    };
    let err = err.to_string();
    assert!(
        err.contains("interval_ms") && err.contains("at-least-once"),
        "{err}"
    );
}

#[test]
fn an_epoch_larger_than_its_memory_budget_spills_to_the_store_and_resumes_exactly_once() {
    let input = "eo-spill-in";
    let output = "eo-spill-out";
    create_topic(input, 1);
    create_topic(output, 1);
    let expected = produce_values(input, "a-record-of-some-length", 20_000);
    let dir = tempfile::tempdir().unwrap();
    // One epoch of about 900 KiB (one checkpoint, at the end), 16 KiB
    // in memory at most: nearly all of it goes to the state store.
    let text = echo_job(
        "eo-spill",
        input,
        output,
        "until = \"latest\"",
        "transaction_bytes = 4096\nepoch_memory_bytes = 16384",
    )
    .replace("interval_ms = 100", "interval_ms = 60000");
    std::fs::write(dir.path().join("job.toml"), &text).unwrap();
    let weir = |args: &[&str], failpoint: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.current_dir(dir.path())
            .env("WEIR_RUN_DIR", dir.path().join("run"))
            .env("WEIR_LOG", "warn")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(f) = failpoint {
            c.env("WEIR_FAILPOINT", f);
        }
        c.output().unwrap()
    };
    let spilled = || -> Vec<std::path::PathBuf> {
        let root = dir.path().join("weir-state/jobs/eo-spill/sink-spill");
        let mut files = Vec::new();
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    files.push(e.path());
                }
            }
        }
        files
    };
    let crashed = weir(&["run", "job.toml"], Some("kafka-before-commit:20"));
    assert!(!crashed.status.success(), "the failpoint aborted the run");
    let held = spilled();
    assert!(
        held.len() > 100,
        "the epoch went to the store in segments: {} objects",
        held.len()
    );
    // The checkpoint's blob holds only what stayed in memory.
    let blobs: u64 = walk_sizes(&dir.path().join("weir-state/jobs/eo-spill/checkpoints"));
    assert!(blobs < 64 << 10, "checkpoint files {blobs} bytes");
    let resumed = weir(&["run", "job.toml", "--from-savepoint", "latest"], None);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let mut got = read_values(output);
    got.sort();
    assert_eq!(got, expected, "each record once, across the crash");
    assert!(
        spilled().is_empty(),
        "spilled segments are deleted once produced: {:?}",
        spilled()
    );
}

/// Total size of the files under `dir`.
fn walk_sizes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            walk_sizes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn consumer_lag_is_reported_in_records_and_in_seconds() {
    let (job, _) = kafka_job("eo-lag", 300_000);
    let out = format!("{}-out", job.name);
    write_job(&job, 2, &out, "", "interval_ms = 200");
    // Without an end: the job catches up, then waits for more.
    let text = std::fs::read_to_string(job.file()).unwrap();
    std::fs::write(job.file(), text.replace("until = \"latest\"", "")).unwrap();
    let mut child = job.spawn(None);
    job.wait_running();
    let ep = weir::runtime::control::find_in(&job.root.join("run"), &job.name).unwrap();
    let status = || -> serde_json::Value {
        let (code, body) = ep.request("GET", "/status").unwrap();
        assert_eq!(code, 200);
        serde_json::from_str(&body).unwrap()
    };
    let list = |v: &serde_json::Value, k: &str| -> Vec<i64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut behind, mut caught_up) = (false, false);
    while !caught_up {
        assert!(Instant::now() < deadline, "never caught up: {}", status());
        let s = status();
        let (records, ms) = (list(&s, "consumer_lag"), list(&s, "consumer_lag_ms"));
        assert_eq!(records.len(), ms.len(), "{s}");
        for (r, m) in records.iter().zip(&ms) {
            if *r == 0 {
                assert_eq!(*m, 0, "caught up is no lag in time: {s}");
            }
            if *r > 0 && *m > 0 {
                behind = true;
            }
        }
        caught_up = !records.is_empty() && records.iter().all(|r| *r == 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, metrics) = ep.request("GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE weir_consumer_lag_seconds gauge"),
        "{metrics}"
    );
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("weir_consumer_lag_seconds{"))
        .collect();
    assert_eq!(samples.len(), 6, "one per input partition: {samples:?}");
    assert!(
        samples
            .iter()
            .all(|l| l.contains("topic=\"eo-lag-in\"") && l.ends_with(" 0.0")),
        "{samples:?}"
    );
    job.run_ok(&["stop", job.file().to_str().unwrap()]);
    child.wait().unwrap();
    println!("seen behind with a lag in time: {behind}");
}
