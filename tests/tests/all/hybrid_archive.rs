//! History archived as Kafka Connect names its files, and savepoints that
//! move between job kinds and plugin builds, against the real test broker:
//! a Connect-named archive hands off to Kafka per partition with no record
//! read twice or skipped (the topic written in transactions, whose markers
//! take offsets, and its oldest records deleted as retention does); a files
//! job's savepoint starts a Kafka job where the files end; an event-time
//! savepoint of the history phase starts the job again with another
//! plugin build, which reprocesses from there and continues live.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use weir::checkpoint::manifest;
use weir::checkpoint::store::StateStore;
use weir::config::JobFile;
use weir_tests::kafka::{
    archive_as_connect, create_topic, delete_records_before, produce_in_transaction, read_values,
};
use weir_tests::{assert_same_output, csv_lines, reference_alerts, state_machine_variant};

use crate::hybrid::{
    Hybrid, run_refused, run_through, run_with_live_records, stop, wait_for_output,
};

/// Put the job's history through its input topic first, in transactions of
/// 2,000 records (their commit markers take offsets inside the archive's
/// files), and replace `history/` with a Connect-named archive of the
/// topic, 1,500 records a file. Returns the archived record count.
fn history_through_kafka_into_an_archive(job: &Hybrid) -> usize {
    let topic = format!("{}-in", job.name);
    let history = csv_lines(&job.root.join("history"));
    for chunk in history.chunks(2_000) {
        let records: Vec<(&str, &str)> = chunk
            .iter()
            .map(|l| (l.split(',').next().unwrap(), l.as_str()))
            .collect();
        produce_in_transaction(&topic, &records, true);
    }
    std::fs::remove_dir_all(job.root.join("history")).unwrap();
    let n = archive_as_connect(&topic, &job.root.join("history"), 1_500);
    assert_eq!(n, history.len(), "every history record archived");
    n
}

/// The start offset of partition `p`'s last archived file.
fn last_file_start(job: &Hybrid, p: usize) -> i64 {
    let mut names: Vec<String> = std::fs::read_dir(job.root.join(format!("history/partition={p}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let last = names.last().expect("partition has files");
    let offset = last.rsplit('+').next().unwrap().trim_end_matches(".csv");
    offset.parse().unwrap()
}

#[test]
fn a_connect_named_archive_hands_off_per_partition_with_nothing_read_twice_or_skipped() {
    let job = Hybrid::new("hybrid-connect", 60_000, 2);
    history_through_kafka_into_an_archive(&job);
    // Retention deleted what came before partition 0's last archived file:
    // those records are in the archive only.
    let topic = format!("{}-in", job.name);
    delete_records_before(&topic, 0, last_file_start(&job, 0));
    let said = run_with_live_records(&job, &job.expected(), "Connect archive, then live");
    assert!(said.contains("archive=true"), "{said}");
    assert!(said.contains("switching to Kafka"), "{said}");
}

/// Rewrite the job's file with `[source]` replaced by `source` and the
/// top-level settings `head` (everything from the operators on kept).
fn set_source(job: &Hybrid, head: &str, source: &str) {
    let text = std::fs::read_to_string(job.file()).unwrap();
    let rest = &text[text.find("[[operators]]").unwrap()..];
    let text = format!("name = \"{}\"\n{head}\n{source}\n{rest}", job.name);
    std::fs::write(job.file(), text).unwrap();
}

/// The job as a files job over its `history/` with `partitions`.
fn as_files_job(job: &Hybrid, partitions: usize) {
    set_source(
        job,
        &format!("parallelism = 2\npartitions = {partitions}"),
        "[source]\ntype = \"files\"\npath = \"history\"\nformat = \"csv\"\n\
         key_column = 0\ntimestamp_column = 2",
    );
}

/// The job as a bounded Kafka job on its input topic.
fn as_kafka_job(job: &Hybrid) {
    let kafka = format!(
        "[source]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"{}-in\"\nformat = \"csv\"\n\
         key_column = 0\ntimestamp_column = 2\nuntil = \"latest\"",
        weir_tests::kafka::brokers(),
        job.name
    );
    set_source(job, "parallelism = 2", &kafka);
}

#[test]
fn a_files_job_savepoint_starts_a_kafka_job_where_the_files_end() {
    let job = Hybrid::new("files-to-kafka", 60_000, 2);
    history_through_kafka_into_an_archive(&job);
    // The history as a files job (its partitions the topic's), to its end.
    as_files_job(&job, 4);
    run_through(&job);
    // The same job, now reading the topic: a plain run resumes from the
    // files job's final checkpoint, with its state, at the offsets right
    // after the archive.
    job.produce_live();
    as_kafka_job(&job);
    let said = run_through(&job);
    assert!(said.contains("where its files end"), "{said}");
    assert_same_output(
        &read_values(&job.out()),
        &job.expected(),
        "a files job, then the same job reading Kafka",
    );

    // A files job with other partitions than the topic is refused, saying
    // what to do.
    let other = Hybrid::new("files-to-kafka-8", 60_000, 1);
    as_files_job(&other, 8);
    run_through(&other);
    as_kafka_job(&other);
    let said = run_refused(&other);
    assert!(said.contains("with 8 partitions"), "{said}");
    assert!(said.contains("`partitions = 4`"), "{said}");
}

/// The history lines before a files-phase position (files read whole, then
/// `line` lines of the file being read).
fn history_before(job: &Hybrid, position: &serde_json::Value) -> Vec<String> {
    let files = &position["files"];
    let done: Vec<&str> = files["done"]
        .as_array()
        .map(|d| d.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    let current = files["file"].as_str();
    let lines = files["line"].as_u64().unwrap_or(0) as usize;
    let mut names: Vec<String> = std::fs::read_dir(job.root.join("history"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut before = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(job.root.join("history").join(&name)).unwrap();
        if done.contains(&name.as_str()) {
            before.extend(text.lines().map(str::to_string));
        } else if current == Some(name.as_str()) {
            before.extend(text.lines().take(lines).map(str::to_string));
        }
    }
    before
}

/// `all` less `some`, as multisets.
fn without(all: Vec<String>, some: &[String]) -> Vec<String> {
    let mut left: HashMap<&String, usize> = HashMap::new();
    for s in some {
        *left.entry(s).or_default() += 1;
    }
    let mut out = Vec::new();
    for a in &all {
        match left.get_mut(a) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(a.clone()),
        }
    }
    out
}

#[test]
fn an_event_time_savepoint_of_the_history_reprocesses_with_another_build_and_goes_live() {
    let job = Hybrid::new("hybrid-reprocess", 60_000, 2);
    // A savepoint every 5 s of event time (5,000 events of the generator).
    let text = std::fs::read_to_string(job.file()).unwrap();
    std::fs::write(
        job.file(),
        text.replace(
            "interval_ms = 100",
            "interval_ms = 100\nsavepoint_every_event_time_ms = 5000",
        ),
    )
    .unwrap();
    run_with_live_records(&job, &job.expected(), "the first run");

    // An event-time savepoint taken while the files were read.
    let plan = JobFile::load(&job.file())
        .unwrap()
        .resolve(&job.name, &job.root)
        .unwrap();
    let store = StateStore::open(&plan.checkpoint.unwrap().store, &job.root).unwrap();
    let in_history: Vec<_> = manifest::list(&store, &job.name)
        .unwrap()
        .into_iter()
        .filter(|f| f.folder.contains("/savepoints/et-"))
        .filter(|f| f.manifest.source.position["phase"] == "files")
        .collect();
    assert!(
        in_history.len() >= 2,
        "event-time savepoints of the history: {}",
        in_history.len()
    );
    let chosen = &in_history[in_history.len() / 2];
    let name = chosen.folder.rsplit('/').next().unwrap().to_string();
    let before = history_before(&job, &chosen.manifest.source.position);
    assert!(!before.is_empty());
    let prefix = job.root.join("prefix");
    std::fs::create_dir_all(&prefix).unwrap();
    std::fs::write(prefix.join("a.csv"), before.join("\n") + "\n").unwrap();
    let expected = without(job.expected(), &reference_alerts(&prefix));

    // The job again from there, with another build of the plugin (same
    // state version) and a new output topic: it reads the rest of the
    // history, switches to Kafka and reads the live records.
    let variant = state_machine_variant(&job.root, "reprocess");
    let again = format!("{}-again", job.name);
    create_topic(&again, 2);
    let text = std::fs::read_to_string(job.file()).unwrap();
    let text = text
        .replace(
            weir_tests::artifacts::STATE_MACHINE,
            variant.to_str().unwrap(),
        )
        .replace(
            &format!("topic = \"{}\"", job.out()),
            &format!("topic = \"{again}\""),
        );
    std::fs::write(job.file(), text).unwrap();
    let mut child = job
        .weir()
        .args([
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            &name,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_output(&mut child, &again, expected.len(), Duration::from_secs(90));
    let said = stop(child);
    assert!(said.contains("switching to Kafka"), "{said}");
    assert_same_output(
        &read_values(&again),
        &expected,
        "reprocessed from an event-time savepoint with another build",
    );
    assert!(Path::new(&variant).exists());
}
