//! Dead letters to a Kafka topic (`[dead_letter] type = "kafka"`), against
//! the real test broker: two jobs' processes write into one dead-letter
//! topic, each dead letter the refused record itself with its origin and
//! reason in headers; a crash after a checkpoint loses none of the dead
//! letters it covers (a file here: the same flush serves both).

use std::collections::BTreeSet;

use weir_tests::kafka::{create_topic, read_records, read_values};

use crate::kafka::{kafka_job, write_job};

/// `n` undecodable records (no timestamp column), keyed `<i>`, into
/// `topic`; their values.
fn produce_garbage(topic: &str, n: usize) -> BTreeSet<String> {
    let bad: Vec<(String, String)> = (0..n)
        .map(|i| (format!("{i}"), format!("garbage record {i} of {topic}")))
        .collect();
    weir_tests::kafka::produce(topic, bad.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    bad.into_iter().map(|(_, v)| v).collect()
}

/// Point the job's `[dead_letter]` table at `topic`.
fn dead_letters_to(job: &crate::savepoints::Job, topic: &str) {
    let text = std::fs::read_to_string(job.file()).unwrap();
    let table = format!(
        "[dead_letter]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"{topic}\"\n",
        weir_tests::kafka::brokers()
    );
    let text = text.replace("[dead_letter]\npath = \"dead-letters.jsonl\"\n", &table);
    assert!(text.contains("type = \"kafka\"\nbrokers"));
    std::fs::write(job.file(), text).unwrap();
}

#[test]
fn dead_letters_of_two_processes_land_in_one_topic_each_with_its_origin() {
    let topic = "dl-shared";
    create_topic(topic, 2);
    let mut jobs = Vec::new();
    let mut garbage = BTreeSet::new();
    for name in ["dl-topic-a", "dl-topic-b"] {
        let (job, expected) = kafka_job(name, 20_000);
        let input = format!("{name}-in");
        garbage.extend(produce_garbage(&input, 15));
        write_job(&job, 2, &format!("{name}-out"), "", "interval_ms = 100");
        dead_letters_to(&job, topic);
        jobs.push((job, expected, input));
    }
    // Both processes at once.
    let children: Vec<_> = jobs.iter().map(|(job, _, _)| job.spawn(None)).collect();
    for (mut child, (job, _, _)) in children.into_iter().zip(&jobs) {
        let status = child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        assert!(status.success(), "{}: {err}", job.name);
    }
    for (job, expected, _) in &jobs {
        weir_tests::assert_same_output(
            &read_values(&format!("{}-out", job.name)),
            expected,
            "valid records",
        );
        assert!(
            !job.root.join("dead-letters.jsonl").exists(),
            "no dead-letter file when they go to a topic"
        );
    }

    let dead = read_records(topic);
    let values: BTreeSet<String> = dead
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert_eq!(values, garbage, "every refused record, as it was");
    assert_eq!(dead.len(), garbage.len(), "each once (no crash)");
    for r in &dead {
        let h = &r.headers;
        let value = String::from_utf8_lossy(&r.value);
        let job = &h["weir.job"];
        let (_, input) = value.rsplit_once(" of ").unwrap();
        assert_eq!(input, format!("{job}-in"), "{h:?}");
        assert_eq!(h["weir.source.topic"], input, "{h:?}");
        assert_eq!(h["weir.stage"], "source");
        assert!(h["weir.reason"].contains("column"), "{h:?}");
        let offset: i64 = h["weir.source.offset"].parse().unwrap();
        assert!(offset >= 0);
        let partition: i32 = h["weir.source.partition"].parse().unwrap();
        // Produced under the key `<i>` (the source routes by it).
        let key = value
            .trim_start_matches("garbage record ")
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(
            partition as u32,
            weir::partition::partition_for_key(key.as_bytes(), crate::kafka::PARTITIONS as u32),
            "{h:?}"
        );
    }
}

#[test]
fn a_dead_letter_topic_that_does_not_exist_is_refused_before_anything_runs() {
    let (job, _) = kafka_job("dl-topic-missing", 1_000);
    write_job(&job, 1, "dl-topic-missing-out", "", "interval_ms = 100");
    dead_letters_to(&job, "dl-no-such-topic");
    let out = job
        .weir()
        .args(["run", job.file().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("[dead_letter] topic dl-no-such-topic"),
        "{err}"
    );
    assert!(read_values("dl-topic-missing-out").is_empty(), "no output");
}

#[test]
fn a_crash_after_a_checkpoint_loses_no_dead_letter_it_covers() {
    // Garbage first, then a stream long enough that the worker is never
    // idle before the first checkpoint (an idle worker flushes anyway).
    // The run aborts after that checkpoint is durable, before committing
    // its output: the checkpoint covers every garbage record, so a restore
    // never reads them again. Their dead letters must be in the file.
    let input = "dl-crash-in";
    let output = "dl-crash-out";
    create_topic(input, 1);
    create_topic(output, 1);
    let garbage = produce_garbage(input, 10);
    let valid: Vec<(String, String)> = (0..200_000)
        .map(|i| (format!("k{i}"), format!("k{i},{}", 1_000 + i)))
        .collect();
    weir_tests::kafka::produce(
        input,
        valid.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
    );
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[dead_letter]\npath = \"dead-letters.jsonl\"\n",
        crate::kafka_faults::echo_job(
            "dl-crash",
            input,
            output,
            "format = \"csv\"\nkey_column = 0\ntimestamp_column = 1\nuntil = \"latest\"",
            ""
        )
    );
    let file = dir.path().join("dl-crash.toml");
    std::fs::write(&file, text).unwrap();
    let weir = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.env("WEIR_RUN_DIR", dir.path().join("run"))
            .env("WEIR_LOG", "warn")
            .current_dir(dir.path());
        c
    };
    let crashed = weir()
        .args(["run", file.to_str().unwrap()])
        .env("WEIR_FAILPOINT", "kafka-before-commit")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the failpoint aborted the run");
    let dead = |path: &std::path::Path| -> BTreeSet<String> {
        weir_tests::read_dead_letters(path)
            .iter()
            .map(|d| d["value"].as_str().unwrap().to_string())
            .collect()
    };
    let path = dir.path().join("dead-letters.jsonl");
    assert_eq!(dead(&path), garbage, "written before the checkpoint");
    let resumed = weir()
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(dead(&path), garbage, "every dead letter after the restore");
    assert_eq!(read_values(output).len(), valid.len(), "the output, once");
}
