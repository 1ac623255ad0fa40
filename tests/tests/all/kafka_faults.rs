//! Kafka faults an operator or a cluster can cause, against the real test
//! broker: client settings from the job's properties (Weir's own keys
//! refused, the rest reaching every client).

use std::path::Path;
use std::time::Instant;

use weir::checkpoint::manifest;
use weir::checkpoint::store::StateStore;
use weir::config::JobFile;
use weir::job::{RunOptions, run};
use weir_tests::artifacts;
use weir_tests::kafka::{brokers, create_topic, produce, read_values};

/// An echo job (Kafka in, Kafka out) as job-file text; `sink` is added to
/// the `[sink]` table, `source` to the `[source]` table.
fn echo_job(name: &str, input: &str, output: &str, source: &str, sink: &str) -> String {
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
fn run_in(dir: &Path, name: &str, text: &str) -> weir::Result<weir::job::JobReport> {
    let plan = JobFile::parse(text)?.resolve(name, dir)?;
    run(&plan, RunOptions::default())
}

/// `n` records `k<i>` = `<prefix>-<i>` produced to `topic`; what the echo
/// plugin makes of them (`k<i>=<prefix>-<i>`), sorted.
fn produce_values(topic: &str, prefix: &str, n: usize) -> Vec<String> {
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
        .err()
        .expect("a sink whose clients cannot connect fails")
        .to_string();
    println!("refused after {:?}: {e}", started.elapsed());
    assert!(
        e.contains(&format!("reading metadata of topic `{output}`")),
        "the validation probe fails: {e}"
    );
    assert_eq!(checkpoints(dir.path(), "probe-props", &text), 0);
    assert!(read_values(output).is_empty());
}
