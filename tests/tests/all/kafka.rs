//! Kafka end to end, against a real Apache Kafka broker on 127.0.0.1
//! (`scripts/kafka.sh start`; `KAFKA_BROKERS` names it): the state-machine
//! job reading a 6-partition topic and writing its alerts exactly once to
//! another, checked with a `read_committed` consumer against an
//! independent DFA; crashes at random moments and inside the window
//! between a durable checkpoint and the transaction commit; restoring into
//! a new topic; dead letters with partition and offset; a plugin swap
//! under a running Kafka job, and forks of it.

use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir::config::JobFile;
use weir::job::{RunOptions, run};
use weir::partition::partition_for_key;
use weir_tests::kafka::{
    PrivateBroker, brokers, create_topic, delete_records_before, produce, produce_csv_dir,
    produce_in_transaction, read_committed, read_values, sorted_values,
    wait_for_no_open_transaction, with_brokers,
};
use weir_tests::{artifacts, assert_same_output, read_dead_letters, reference_alerts};

use crate::savepoints::Job;

pub(crate) const PARTITIONS: i32 = 6;

/// A job folder with generated events produced to `<name>-in` (6
/// partitions) and an empty `<name>-out` (3 partitions).
pub(crate) fn kafka_job(name: &str, events: u64) -> (Job, Vec<String>) {
    let job = Job::new(name, events, artifacts::STATE_MACHINE, 1, "");
    create_topic(&format!("{name}-in"), PARTITIONS);
    create_topic(&format!("{name}-out"), 3);
    let produced = produce_csv_dir(&job.root.join("events"), &format!("{name}-in"));
    assert_eq!(produced, events);
    let expected = reference_alerts(&job.root.join("events"));
    assert!(!expected.is_empty());
    (job, expected)
}

/// Write the job file: Kafka in, the state-machine plugin, Kafka out.
pub(crate) fn write_job(
    job: &Job,
    parallelism: usize,
    out_topic: &str,
    extra_source: &str,
    checkpoints: &str,
) {
    let text = format!(
        r#"
name = "{name}"
parallelism = {parallelism}
[source]
type = "kafka"
brokers = "{brokers}"
topic = "{name}-in"
format = "csv"
key_column = 0
timestamp_column = 2
until = "latest"
{extra_source}
[[operators]]
name = "op"
plugin = "{plugin}"
[sink]
type = "kafka"
brokers = "{brokers}"
topic = "{out_topic}"
[dead_letter]
path = "dead-letters.jsonl"
[checkpoints]
{checkpoints}
"#,
        name = job.name,
        brokers = brokers(),
        plugin = artifacts::STATE_MACHINE,
    );
    std::fs::write(job.file(), text).unwrap();
}

#[test]
fn kafka_to_kafka_exactly_once_equals_the_dfa_at_parallelism_1_2_4() {
    let (job, expected) = kafka_job("kafka-eo", 300_000);
    // The producer's partitioner is Kafka's default: each key sits in the
    // partition murmur2 gives it, which Weir's partition runs.
    for (p, key, _) in read_committed(&format!("{}-in", job.name))
        .iter()
        .step_by(97)
    {
        assert_eq!(*p as u32, partition_for_key(key, PARTITIONS as u32));
    }
    for parallelism in [1, 2, 4] {
        let out = format!("{}-out-p{parallelism}", job.name);
        create_topic(&out, 3);
        write_job(&job, parallelism, &out, "", "interval_ms = 100");
        let plan = JobFile::load(&job.file())
            .unwrap()
            .resolve(&job.name, &job.root)
            .unwrap();
        let mut plan = plan;
        plan.name = format!("{}-p{parallelism}", job.name);
        plan.control = None;
        let report = run(&plan, RunOptions::default()).unwrap();
        assert_eq!(report.totals.records_read, 300_000);
        assert_eq!(report.tasks.len(), parallelism);
        assert!(report.checkpoints.completed > 0, "checkpoints were taken");
        assert_same_output(
            &read_values(&out),
            &expected,
            &format!("alerts at parallelism {parallelism}"),
        );
    }
}

/// A small random generator for kill times (seed printed for a rerun).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kafka_kill_9_at_random_moments_and_before_a_commit_is_exactly_once() {
    let (job, expected) = kafka_job("kafka-kill", 1_000_000);
    let out = format!("{}-out", job.name);
    write_job(&job, 2, &out, "", "interval_ms = 150");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill seed {seed}");
    let mut rng = Lcg(seed);
    let from = |job: &Job| {
        (!manifest::list(&job.store(), &job.name).unwrap().is_empty()).then_some("latest")
    };

    // A crash inside the window between a durable manifest and the
    // transaction commit (a failpoint aborts the process there).
    let mut child = job.weir();
    child
        .args(["run", job.file().to_str().unwrap()])
        .env("WEIR_FAILPOINT", "kafka-before-commit")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let status = child.status().unwrap();
    assert!(!status.success(), "the failpoint aborted the run");
    assert!(
        from(&job).is_some(),
        "a checkpoint was durable before the abort"
    );
    assert!(
        read_values(&out).is_empty(),
        "nothing committed before the abort"
    );

    // scripts/soak.sh runs 100 (WEIR_CRASH_RUNS). The runs killed read
    // without an end (no `until`), so each is killed, wherever it is: mid
    // input, in a checkpoint or a commit, or idle at the end of the topic.
    let wanted: u32 = std::env::var("WEIR_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let bounded = std::fs::read_to_string(job.file()).unwrap();
    std::fs::write(job.file(), bounded.replace("until = \"latest\"", "")).unwrap();
    let mut kills = 0;
    while kills < wanted {
        let mut child = job.spawn(from(&job));
        let wait = Duration::from_millis(150 + rng.next(1200));
        let started = Instant::now();
        while started.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("an unbounded run ended by itself with {status}: {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    // The last run reads to the end offsets and finishes.
    std::fs::write(job.file(), &bounded).unwrap();
    job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "latest",
    ]);
    println!("{kills} kills");
    assert_eq!(kills, wanted, "every run but the last was killed");
    assert_same_output(&read_values(&out), &expected, "alerts after crashes");

    // The run ended with a final checkpoint that covers all its output:
    // restoring it again writes nothing twice.
    let out_before = read_values(&out);
    job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "latest",
    ]);
    assert_eq!(
        read_values(&out),
        out_before,
        "a restore of the final checkpoint"
    );

    // The topic holds everything: restoring an older checkpoint must not
    // write any of it again.
    let older: Vec<_> = manifest::list(&job.store(), &job.name)
        .unwrap()
        .into_iter()
        .filter(|f| f.manifest.kind == manifest::Kind::Checkpoint)
        .collect();
    assert!(older.len() >= 2, "checkpoints kept: {}", older.len());
    let said = job
        .weir()
        .args([
            "run",
            job.file().to_str().unwrap(),
            "--from-savepoint",
            &older[0].manifest.id.to_string(),
        ])
        .output()
        .unwrap();
    // Refused when the topic holds output of a later epoch; when every
    // epoch after it was empty (the run was idle at its end), the restore
    // runs and produces nothing new. Either way nothing is written twice.
    let err = String::from_utf8_lossy(&said.stderr);
    if !said.status.success() {
        assert!(err.contains("already committed the output"), "{err}");
    }
    assert_eq!(read_values(&out), out_before);
}

#[test]
fn a_broker_restart_during_a_run_keeps_the_output_exactly_once() {
    // A broker of its own: restarting the shared one would disturb the
    // other tests.
    let broker = PrivateBroker::start(9192);
    with_brokers(&broker.brokers, || {
        let (job, expected) = kafka_job("kafka-broker-restart", 1_000_000);
        let out = format!("{}-out", job.name);
        write_job(&job, 1, &out, "", "interval_ms = 200");
        let mut child = job.spawn(None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while manifest::list(&job.store(), &job.name).unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no checkpoint within 60 s");
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker.restart();
        // The job rides the restart out, or fails with a clear error and
        // is restarted from `latest`, as an operator would.
        let mut status = wait_for(&mut child, Duration::from_secs(240));
        let mut restarts = 0;
        while !status.0.success() {
            println!("run failed after the broker restart: {}", status.1);
            assert!(
                status.1.contains("kafka"),
                "the error names Kafka: {}",
                status.1
            );
            restarts += 1;
            assert!(
                restarts <= 3,
                "still failing after 3 restarts: {}",
                status.1
            );
            let mut again = job.spawn(Some("latest"));
            status = wait_for(&mut again, Duration::from_secs(240));
        }
        println!("finished after {restarts} restarts from latest");
        // The last commits' markers may reach the partitions a moment
        // after the run ends (slower after a restart); until then a
        // `read_committed` reader stops short of those records.
        let offsets = wait_for_no_open_transaction(&out, Duration::from_secs(60));
        // Shown when the test fails: what the run logged (warnings and
        // up), and for each output partition where a transaction was
        // still open and how many records a `read_committed` reader sees.
        println!("the run's log:\n{}", status.1);
        println!(
            "(last stable offset, high watermark) per output partition, \
             after waiting at most 60 s for them to meet: {offsets:?}"
        );
        let committed = read_committed(&out);
        let mut per_partition = std::collections::BTreeMap::<i32, usize>::new();
        for (p, _, _) in &committed {
            *per_partition.entry(*p).or_default() += 1;
        }
        println!("committed records per output partition: {per_partition:?}");
        let dead = job.root.join("dead-letters.jsonl");
        assert!(
            !dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty(),
            "no dead letters: {}",
            std::fs::read_to_string(&dead)
                .unwrap_or_default()
                .chars()
                .take(2000)
                .collect::<String>()
        );
        assert_same_output(
            &sorted_values(committed),
            &expected,
            "alerts across a broker restart",
        );
    });
}

/// Wait for `child` to exit (killed after `limit`): its status and stderr.
fn wait_for(
    child: &mut std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    // Read stderr meanwhile, so a chatty run never blocks on a full pipe.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
            err
        })
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = stderr.map(|t| t.join().unwrap()).unwrap_or_default();
    (child.wait().unwrap(), err)
}

#[test]
fn a_savepoint_restored_into_a_new_topic_continues_from_its_point() {
    let (job, expected) = kafka_job("kafka-sp", 1_000_000);
    let first = format!("{}-out", job.name);
    let second = format!("{}-out-2", job.name);
    create_topic(&second, 3);
    write_job(&job, 2, &first, "", "interval_ms = 500");
    let mut child = job.spawn(None);
    job.wait_running();
    job.run_ok(&[
        "stop",
        job.file().to_str().unwrap(),
        "--savepoint",
        "--name",
        "mid",
    ]);
    assert!(child.wait().unwrap().success());
    let sp = manifest::select(&job.store(), &job.name, "mid")
        .unwrap()
        .manifest;
    let read: i64 = sp
        .partitions
        .iter()
        .map(|p| p.source["offset"].as_i64().unwrap())
        .sum();
    assert!(
        read > 0 && read < 1_000_000,
        "taken mid-input ({read} records)"
    );
    let listed = job.run_ok(&["savepoint", "list", job.file().to_str().unwrap()]);
    assert!(
        listed.contains("kafka") && listed.contains("0:"),
        "{listed}"
    );

    write_job(&job, 2, &second, "", "interval_ms = 500");
    job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "mid",
    ]);
    let mut both = read_values(&first);
    both.extend(read_values(&second));
    both.sort();
    assert_same_output(
        &both,
        &expected,
        "alerts before the savepoint plus after it",
    );
}

#[test]
fn undecodable_kafka_records_go_to_dead_letters_with_partition_and_offset() {
    let (job, expected) = kafka_job("kafka-dl", 50_000);
    let input = format!("{}-in", job.name);
    let bad: Vec<(String, String)> = (0..20)
        .map(|i| (format!("{i}"), format!("garbage record {i}")))
        .collect();
    produce_pairs(&input, &bad);
    write_job(
        &job,
        2,
        &format!("{}-out", job.name),
        "",
        "interval_ms = 100",
    );
    job.run_ok(&["run", job.file().to_str().unwrap()]);
    let dead = read_dead_letters(&job.root.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 20, "{dead:?}");
    for d in &dead {
        assert_eq!(d["stage"], "source");
        assert_eq!(d["topic"], input);
        let p = d["partition"].as_u64().unwrap();
        let key = d["value"]
            .as_str()
            .unwrap()
            .trim_start_matches("garbage record ");
        assert_eq!(
            p,
            u64::from(partition_for_key(key.as_bytes(), PARTITIONS as u32))
        );
        assert!(d["offset"].as_u64().is_some());
        assert!(d["reason"].as_str().unwrap().contains("column"), "{d}");
    }
    assert_same_output(
        &read_values(&format!("{}-out", job.name)),
        &expected,
        "valid records",
    );
}

/// Run the echo plugin over `topic` with `source` settings (in process) and
/// return what it read, as sorted `key=value` lines.
fn echo_run(name: &str, topic: &str, source: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let report = echo_run_in(dir.path(), name, topic, source, None).unwrap();
    assert_eq!(report.completion, weir::source::Completion::EndOfInput);
    weir_tests::read_output(&dir.path().join("out"))
}

/// The echo job of [`echo_run`] in `dir` (state and output stay there),
/// optionally restored from a savepoint.
fn echo_run_in(
    dir: &std::path::Path,
    name: &str,
    topic: &str,
    source: &str,
    from: Option<&str>,
) -> weir::Result<weir::job::JobReport> {
    let text = format!(
        r#"
name = "{name}"
parallelism = 2
[source]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
{source}
[[operators]]
name = "echo"
plugin = "{plugin}"
[sink]
type = "file"
path = "out"
[checkpoints]
interval_ms = 100
"#,
        brokers = brokers(),
        plugin = artifacts::ECHO,
    );
    let plan = JobFile::parse(&text).unwrap().resolve(name, dir).unwrap();
    run(
        &plan,
        RunOptions {
            from_savepoint: from.map(str::to_string),
            ..RunOptions::default()
        },
    )
}

fn lines(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("k{i}"), format!("{prefix}-{i}")))
        .collect()
}

fn expect(records: &[(String, String)]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    v
}

#[test]
fn kafka_start_modes_and_ends_read_what_they_say() {
    let topic = "kafka-modes-in";
    create_topic(topic, 3);
    let first = lines("a", 40);
    produce_pairs(topic, &first);
    std::thread::sleep(Duration::from_millis(50));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::sleep(Duration::from_millis(50));
    let second = lines("b", 40);
    produce_pairs(topic, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();

    // Raw values, keyed by the Kafka record key, from the earliest offsets
    // to the end offsets seen at start.
    let got = echo_run("modes-earliest", topic, "until = \"latest\"");
    assert_same_output(&got, &expect(&all), "earliest .. latest");
    // From a time: only what was produced after it.
    let got = echo_run(
        "modes-from-time",
        topic,
        &format!("start = \"timestamp:{between}\"\nuntil = \"latest\""),
    );
    assert_same_output(&got, &expect(&second), "timestamp .. latest");
    // Up to a time: only what was produced before it.
    let got = echo_run(
        "modes-until-time",
        topic,
        &format!("until = \"timestamp:{between}\""),
    );
    assert_same_output(&got, &expect(&first), "earliest .. timestamp");
    // From the end: nothing, and the bounded run still ends.
    let got = echo_run(
        "modes-latest",
        topic,
        "start = \"latest\"\nuntil = \"latest\"",
    );
    assert!(got.is_empty(), "{got:?}");
    // Explicit offsets: partition 0 from its end, the others from the start.
    let in_0 = all
        .iter()
        .filter(|(k, _)| partition_for_key(k.as_bytes(), 3) == 0)
        .count();
    assert!(in_0 > 0);
    let got = echo_run(
        "modes-offsets",
        topic,
        &format!("start_offsets = {{ 0 = {in_0} }}\nuntil = \"latest\""),
    );
    let rest: Vec<_> = all
        .iter()
        .filter(|(k, _)| partition_for_key(k.as_bytes(), 3) != 0)
        .cloned()
        .collect();
    assert_same_output(&got, &expect(&rest), "explicit offsets");

    // Offsets go to the consumer group after each checkpoint (also the
    // final one): a fresh job of the same group starting at `committed`
    // reads only what was produced since.
    let group = "group_id = \"weir-modes-group\"\nuntil = \"latest\"";
    let got = echo_run("modes-group-1", topic, group);
    assert_same_output(&got, &expect(&all), "first run of the group");
    let third = lines("c", 20);
    produce_pairs(topic, &third);
    let got = echo_run(
        "modes-group-2",
        topic,
        &format!("{group}\nstart = \"committed\""),
    );
    assert_same_output(&got, &expect(&third), "from the group's offsets");

    // A topic written in transactions: the committed one is read, the
    // aborted one is not, and the bounded run ends although the log ends
    // with transaction markers.
    let txn = "kafka-modes-txn";
    create_topic(txn, 3);
    let committed = lines("c", 30);
    let aborted = lines("x", 30);
    produce_in_transaction(txn, &as_refs(&committed), true);
    produce_in_transaction(txn, &as_refs(&aborted), false);
    let got = echo_run("modes-txn", txn, "until = \"latest\"");
    assert_same_output(
        &got,
        &expect(&committed),
        "read_committed over transactions",
    );
}

/// Produce `(key, value)` records to `topic`.
fn produce_pairs(topic: &str, records: &[(String, String)]) -> u64 {
    produce(
        topic,
        records.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
    )
}

fn as_refs(r: &[(String, String)]) -> Vec<(&str, &str)> {
    r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn a_restored_offset_deleted_by_retention_is_refused_with_the_logs_range() {
    let topic = "kafka-retention-in";
    create_topic(topic, 1);
    let first = lines("a", 20);
    produce_pairs(topic, &first);
    let dir = tempfile::tempdir().unwrap();
    let bounded = "until = \"latest\"";
    echo_run_in(dir.path(), "kafka-retention", topic, bounded, None).unwrap();
    let second = lines("b", 20);
    produce_pairs(topic, &second);
    // Retention deletes what the job has not read yet: offsets 20..30.
    delete_records_before(topic, 0, 30);
    let out = dir.path().join("out");
    let before = weir_tests::read_output(&out);
    assert_same_output(&before, &expect(&first), "first run");

    let err = echo_run_in(
        dir.path(),
        "kafka-retention",
        topic,
        bounded,
        Some("latest"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("partition 0")
            && err.contains("restored offset 20")
            && err.contains("[30, 40)"),
        "{err}"
    );
    assert_eq!(
        weir_tests::read_output(&out),
        before,
        "output after the refusal"
    );

    // Told what to do, the job starts at the log's start.
    echo_run_in(
        dir.path(),
        "kafka-retention",
        topic,
        "until = \"latest\"\non_offset_out_of_range = \"earliest\"",
        Some("latest"),
    )
    .unwrap();
    let mut want = first.clone();
    want.extend(second[10..].iter().cloned());
    assert_same_output(
        &weir_tests::read_output(&out),
        &expect(&want),
        "after the gap",
    );
}

/// A running Kafka job (no end) takes a new build of its plugin between
/// two halves of its input: the alerts it commits are exactly the DFA's.
/// Then forks from its savepoint between the halves.
#[test]
fn a_swap_under_a_running_kafka_job_keeps_the_output_exactly_once() {
    use crate::swaps::{
        digest, fork_into, latest_digest, outcome, status, stop, swap, text, variant, wait_read,
        without,
    };
    let job = Job::new("kafka-swap", 300_000, artifacts::STATE_MACHINE, 2, "");
    let events = job.root.join("events");
    let expected = reference_alerts(&events);
    let lines = weir_tests::csv_lines(&events);
    let half = lines.len() / 2;
    for (dir, part) in [("first", &lines[..half]), ("second", &lines[half..])] {
        std::fs::create_dir_all(job.root.join(dir)).unwrap();
        std::fs::write(
            job.root.join(dir).join("events.csv"),
            part.join("\n") + "\n",
        )
        .unwrap();
    }
    let (input, out) = (format!("{}-in", job.name), format!("{}-out", job.name));
    create_topic(&input, PARTITIONS);
    create_topic(&out, 3);
    produce_csv_dir(&job.root.join("first"), &input);
    write_job(&job, 2, &out, "", "interval_ms = 100");
    let text_file = std::fs::read_to_string(job.file()).unwrap();
    std::fs::write(job.file(), text_file.replace("until = \"latest\"", "")).unwrap();
    let child = job.spawn(None);
    job.wait_running();
    wait_read(&job, half as u64);
    // A savepoint after the first half, for the forks below.
    job.run_ok(&[
        "savepoint",
        "trigger",
        job.file().to_str().unwrap(),
        "--name",
        "mid",
    ]);
    let new = variant(&job.root, "k");
    let o = swap(&job, &new, 4);
    assert!(o.status.success(), "swap: {}", text(&o));
    produce_csv_dir(&job.root.join("second"), &input);
    let r = outcome(&job, 1);
    assert_eq!(r["outcome"], "promoted", "{r}");
    let new_digest = digest(new.to_str().unwrap());
    assert_eq!(status(&job)["operators"][0], new_digest.as_str());
    wait_read(&job, lines.len() as u64);
    stop(&job, child);
    assert_same_output(&read_values(&out), &expected, "alerts with a swap");
    assert_eq!(latest_digest(&job).as_deref(), Some(new_digest.as_str()));

    // Forks of the Kafka job from `mid` read the topic from its offsets to
    // the end, into their own folders: with the job's plugin, the alerts
    // of the second half; with a reformatting one, the diff says which.
    let after = without(&expected, &reference_alerts(&job.root.join("first")));
    assert!(!after.is_empty());
    let fork = |plugin: &str, dir: &str| fork_into(&job, "mid", plugin, dir);
    let same = fork(artifacts::STATE_MACHINE, "fork-same");
    assert_same_output(
        &weir_tests::read_output(&same),
        &after,
        "a fork of the Kafka job from its savepoint",
    );
    let new = fork(artifacts::REFORMAT, "fork-new");
    let (code, out) = job.diff(&[
        same.to_str().unwrap(),
        new.to_str().unwrap(),
        "--key",
        "address",
        "--json",
    ]);
    assert_eq!(code, 1, "weir diff exits 1 when the outputs differ");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let in_y = after
        .iter()
        .filter(|l| l.contains("\"state\":\"Y\""))
        .count();
    assert_eq!(report["changed"], in_y as u64, "{report}");
    assert_eq!(report["equal"], (after.len() - in_y) as u64, "{report}");
}
