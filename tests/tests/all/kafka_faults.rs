//! Kafka faults an operator or a cluster can cause, against the real test
//! broker: client settings from the job's properties (Weir's own keys
//! refused, the rest reaching every client), transactional ids two jobs
//! cannot share, a progress topic whose settings would lose markers, and
//! the test failpoint out of reach of a binary that did not enable it;
//! at least once, records the broker refuses go to dead letters.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir::checkpoint::store::StateStore;
use weir::config::JobFile;
use weir::job::{RunOptions, run};
use weir_tests::artifacts;
use weir_tests::kafka::{brokers, create_topic, create_topic_with, produce, read_values};

/// An echo job (Kafka in, Kafka out) as job-file text; `sink` is added to
/// the `[sink]` table, `source` to the `[source]` table.
pub(crate) fn echo_job(name: &str, input: &str, output: &str, source: &str, sink: &str) -> String {
    format!(
        r#"
name = "{name}"
parallelism = 1
[source]
type = "kafka"
brokers = "{brokers}"
topic = "{input}"
{source}
[[operators]]
name = "echo"
plugin = "{plugin}"
[sink]
type = "kafka"
brokers = "{brokers}"
topic = "{output}"
{sink}
[checkpoints]
interval_ms = 100
"#,
        brokers = brokers(),
        plugin = artifacts::ECHO,
    )
}

/// Run job-file `text` in `dir`, in process.
pub(crate) fn run_in(dir: &Path, name: &str, text: &str) -> weir::Result<weir::job::JobReport> {
    let plan = JobFile::parse(text)?.resolve(name, dir)?;
    run(&plan, RunOptions::default())
}

/// `n` records `k<i>` = `<prefix>-<i>` produced to `topic`; what the echo
/// plugin makes of them (`k<i>=<prefix>-<i>`), sorted.
pub(crate) fn produce_values(topic: &str, prefix: &str, n: usize) -> Vec<String> {
    let records: Vec<(String, String)> = (0..n)
        .map(|i| (format!("k{i}"), format!("{prefix}-{i}")))
        .collect();
    produce(
        topic,
        records.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
    );
    let mut values: Vec<String> = records.iter().map(|(k, v)| format!("{k}={v}")).collect();
    values.sort();
    values
}

/// The checkpoints job-file `text` (named `name`, in `dir`) completed.
fn checkpoints(dir: &Path, name: &str, text: &str) -> usize {
    let plan = JobFile::parse(text).unwrap().resolve(name, dir).unwrap();
    let store = StateStore::open(&plan.checkpoint.unwrap().store, dir).unwrap();
    manifest::list(&store, name).unwrap().len()
}

#[test]
fn a_job_file_setting_a_key_weir_owns_is_refused_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let sink = r#"properties = { "transactional.id" = "mine", "enable.idempotence" = "false", "compression.type" = "lz4" }"#;
    let text = echo_job("owned-sink", "owned-in", "owned-out", "", sink);
    let e = JobFile::parse(&text)
        .unwrap()
        .resolve("owned-sink", dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`transactional.id`")
            && e.contains("`enable.idempotence`")
            && e.contains("cannot be overridden")
            && !e.contains("compression.type"),
        "{e}"
    );
    let source = r#"properties = { "group.id" = "mine", "isolation.level" = "read_uncommitted" }"#;
    let text = echo_job("owned-source", "owned-in", "owned-out", source, "");
    let e = JobFile::parse(&text)
        .unwrap()
        .resolve("owned-source", dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`group.id`") && e.contains("group_id") && e.contains("`isolation.level`"),
        "{e}"
    );
    // Refused at resolution: nothing ran, nothing was written.
    assert!(!dir.path().join("weir-state").exists());
}

#[test]
fn the_sinks_properties_reach_its_validation_probe() {
    // SASL settings the (plaintext) test broker does not accept: every
    // client built with them fails to talk to it. The probe must fail the
    // way the producer would, before the source is read or a checkpoint
    // is taken, instead of passing without them.
    let (input, output) = ("probe-props-in", "probe-props-out");
    create_topic(input, 1);
    create_topic(output, 1);
    produce_values(input, "v", 10);
    let sink = r#"delivery = "at-least-once"
properties = { "security.protocol" = "sasl_plaintext", "sasl.mechanism" = "PLAIN", "sasl.username" = "u", "sasl.password" = "p" }"#;
    let text = echo_job("probe-props", input, output, "until = \"latest\"", sink);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let e = run_in(dir.path(), "probe-props", &text)
        .expect_err("a sink whose clients cannot connect fails")
        .to_string();
    println!("refused after {:?}: {e}", started.elapsed());
    assert!(
        e.contains(&format!("reading metadata of topic `{output}`")),
        "the validation probe fails: {e}"
    );
    assert_eq!(checkpoints(dir.path(), "probe-props", &text), 0);
    assert!(read_values(output).is_empty());
}

#[test]
fn a_progress_topic_that_would_lose_markers_is_refused_before_anything_is_written() {
    let (input, output) = ("progress-policy-in", "progress-policy-out");
    let progress = format!("{output}.weir-progress");
    create_topic(input, 1);
    let values = produce_values(input, "v", 20);
    let text = echo_job("progress-policy", input, output, "until = \"latest\"", "");
    for (configs, partitions, expect) in [
        (
            &[("cleanup.policy", "delete")][..],
            1,
            "cleanup.policy `delete`",
        ),
        (
            &[("cleanup.policy", "compact,delete")][..],
            1,
            "cleanup.policy `compact,delete`",
        ),
        (&[("cleanup.policy", "compact")][..], 2, "2 partitions"),
    ] {
        create_topic(output, 1);
        create_topic_with(&progress, partitions, configs);
        let dir = tempfile::tempdir().unwrap();
        let e = run_in(dir.path(), "progress-policy", &text)
            .err()
            .unwrap_or_else(|| panic!("a progress topic with {configs:?} is refused"))
            .to_string();
        assert!(e.contains(expect) && e.contains(&progress), "{e}");
        if partitions == 1 {
            assert!(e.contains("`compact`"), "says to use compact: {e}");
        }
        assert_eq!(checkpoints(dir.path(), "progress-policy", &text), 0);
        assert!(read_values(output).is_empty(), "nothing produced");
    }
    // A compacted topic of one partition is used as it is.
    create_topic(output, 1);
    create_topic_with(&progress, 1, &[("cleanup.policy", "compact")]);
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), "progress-policy", &text).unwrap();
    assert_eq!(read_values(output), values);
}

#[test]
fn jobs_whose_transactional_ids_used_to_collide_run_side_by_side() {
    // Job `txids-x` writing `out-txids` and job `txids` writing
    // `x-out-txids`: `weir-<job>-<topic>-<partition>` gave both
    // `weir-txids-x-out-txids-0`, so each fenced the other.
    let input = "txids-in";
    let (job_a, out_a) = ("txids-x", "out-txids");
    let (job_b, out_b) = ("txids", "x-out-txids");
    create_topic(input, 1);
    create_topic(out_a, 1);
    create_topic(out_b, 1);
    let values = produce_values(input, "v", 20);

    // Job A runs without an end in its own process, committing a
    // transaction at every checkpoint.
    let dir_a = tempfile::tempdir().unwrap();
    std::fs::write(
        dir_a.path().join("job.toml"),
        echo_job(job_a, input, out_a, "", ""),
    )
    .unwrap();
    let mut a = Command::new(env!("CARGO_BIN_EXE_weir-it"))
        .arg("run")
        .arg(dir_a.path().join("job.toml"))
        .env("WEIR_RUN_DIR", dir_a.path().join("run"))
        .env("WEIR_LOG", "warn")
        .current_dir(dir_a.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_values(out_a) != values {
        if a.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = a.kill();
            panic!("job A produced its output: {}", stderr(&mut a));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Job B, bounded, in this process while A runs.
    let dir_b = tempfile::tempdir().unwrap();
    run_in(
        dir_b.path(),
        job_b,
        &echo_job(job_b, input, out_b, "until = \"latest\"", ""),
    )
    .unwrap();
    assert_eq!(read_values(out_b), values);

    // A goes on committing (a checkpoint every 100 ms): not fenced by B.
    std::thread::sleep(Duration::from_secs(2));
    if let Some(status) = a.try_wait().unwrap() {
        panic!("job A was stopped by job B ({status}): {}", stderr(&mut a));
    }
    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(read_values(out_a), values);
}

#[test]
fn a_binary_that_did_not_enable_failpoints_ignores_weir_failpoint() {
    // `weir-plain` is the `weir` CLI with the `failpoints` feature compiled
    // in (the tests crate turns it on) but not enabled, as a `weir` binary
    // built in the same workspace build is; a user's `cargo build -p weir`
    // leaves the feature out altogether.
    let (input, output) = ("failpoint-off-in", "failpoint-off-out");
    create_topic(input, 1);
    create_topic(output, 1);
    let values = produce_values(input, "v", 20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.toml"),
        echo_job("failpoint-off", input, output, "until = \"latest\"", ""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-plain"))
        .arg("run")
        .arg(dir.path().join("job.toml"))
        .env("WEIR_RUN_DIR", dir.path().join("run"))
        .env("WEIR_LOG", "warn")
        .env("WEIR_FAILPOINT", "kafka-before-commit")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_values(output), values);
}

#[test]
fn a_restore_from_a_checkpoint_with_the_old_ids_aborts_what_they_left_open() {
    let (input, output, job) = ("legacy-ids-in", "legacy-ids-out", "legacy-ids");
    create_topic(input, 1);
    create_topic(output, 1);
    let values = produce_values(input, "v", 20);
    let dir = tempfile::tempdir().unwrap();
    let text = echo_job(job, input, output, "until = \"latest\"", "");
    run_in(dir.path(), job, &text).unwrap();
    assert_eq!(read_values(output), values);

    // Make every checkpoint look written before the ids were
    // length-prefixed: no `ids` in the sink state.
    let checkpoints = dir
        .path()
        .join(format!("weir-state/jobs/{job}/checkpoints"));
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path().join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(o) => {
                    if o.contains_key("epochs") {
                        o.remove("ids");
                    }
                    o.values_mut().for_each(strip);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut m);
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    }

    // A run under the old id left a transaction open: a record and a
    // marker, neither committed.
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let zombie: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", format!("weir-{job}-{output}-0"))
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    for (topic, key, value) in [
        (output.to_string(), "k0", "zombie"),
        (format!("{output}.weir-progress"), "legacy-ids/0", "999"),
    ] {
        zombie
            .send(BaseRecord::to(&topic).key(key).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    zombie.flush(Duration::from_secs(30)).unwrap();
    // Left open, as by a process that died.
    std::mem::forget(zombie);

    // The restore fences the old id, which aborts that transaction at
    // once; without it the markers' reader would wait for the broker to
    // abort it (the transaction timeout, a minute).
    let started = Instant::now();
    let plan = JobFile::parse(&text)
        .unwrap()
        .resolve(job, dir.path())
        .unwrap();
    run(
        &plan,
        RunOptions {
            from_savepoint: Some("latest".into()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "the restore took {took:?}");
    assert_eq!(
        read_values(output),
        values,
        "the open transaction was aborted"
    );
}

/// Produce `(key, value)` records to `topic`, values up to 16 MiB.
pub(crate) fn produce_large(topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap();
    for (k, v) in records {
        producer
            .send(BaseRecord::to(topic).key(k.as_bytes()).payload(v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn at_least_once_records_the_broker_refuses_go_to_dead_letters_and_the_job_goes_on() {
    // The output topic takes records up to 1 MiB; one value is 2 MiB.
    // Refused by the broker (the producer's own limit raised) or by the
    // producer before sending (its default limit): either way the record
    // goes to the dead-letter output with the reason, the others to the
    // topic.
    let input = "refused-in";
    create_topic_with(input, 1, &[("max.message.bytes", "8388608")]);
    let big = vec![b'x'; 2 << 20];
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), format!("v-{i}").into_bytes()))
        .collect();
    records.insert(5, ("big".into(), big));
    produce_large(input, &records);
    let mut expected: Vec<String> = (0..10).map(|i| format!("k{i}=v-{i}")).collect();
    expected.sort();
    for (output, sink) in [
        (
            "refused-by-broker-out",
            "delivery = \"at-least-once\"\nproperties = { \"message.max.bytes\" = \"8388608\" }",
        ),
        ("refused-by-producer-out", "delivery = \"at-least-once\""),
    ] {
        create_topic_with(output, 1, &[("max.message.bytes", "1048576")]);
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{}[dead_letter]\npath = \"dead-letters.jsonl\"\n",
            echo_job("refused", input, output, "until = \"latest\"", sink)
        );
        let report = run_in(dir.path(), "refused", &text)
            .unwrap_or_else(|e| panic!("{output}: the job goes on: {e}"));
        assert_eq!(report.totals.records_read, 11);
        assert_eq!(read_values(output), expected, "{output}");
        let dead = weir_tests::read_dead_letters(&dir.path().join("dead-letters.jsonl"));
        assert_eq!(dead.len(), 1, "{output}: {dead:?}");
        let d = &dead[0];
        assert_eq!(d["stage"], "sink", "{d}");
        assert_eq!(d["key"], "big", "{d}");
        assert_eq!(d["value"].as_str().map(str::len), Some((2 << 20) + 4));
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains(output) && reason.to_lowercase().contains("too large"),
            "{reason}"
        );
    }
}

/// What a child process wrote to its stderr (after it ended).
fn stderr(child: &mut std::process::Child) -> String {
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).unwrap();
    }
    err
}
