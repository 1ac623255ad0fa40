//! The hybrid source (`[source] type = "hybrid"`): history from files, then
//! live records from Kafka, one job with one state, against the real test
//! broker: the state-machine job's alerts equal an independent DFA over
//! the concatenated stream (history, then Kafka), with keys whose patterns
//! span the switch and live records produced while the job runs; and
//! kill -9 at random moments before, at and after the switch.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir::checkpoint::store::StateStore;
use weir::config::JobFile;
use weir::generate::{GenerateConfig, generate};
use weir_tests::kafka::{brokers, create_topic, produce_csv_dir, read_values};
use weir_tests::{artifacts, assert_same_output, reference_alerts};

/// A hybrid job in a folder: `history/` (files), `live/` (files produced
/// to `<name>-in` by the test), `all/` (both, for the reference).
pub(crate) struct Hybrid {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) name: String,
    /// Armed in every run (`WEIR_FAILPOINT`).
    pub(crate) failpoint: String,
}

impl Hybrid {
    /// `events` generated state-machine events over few enough addresses
    /// that most keys have events on both sides of the switch; the first
    /// `history` files are the history, the rest go to Kafka.
    pub(crate) fn new(name: &str, events: u64, history: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        generate(
            &root.join("all"),
            &GenerateConfig {
                seed: 7,
                events,
                max_address: 5_000,
                error_prob: 0.01,
                file_size: 256 << 10,
                ..GenerateConfig::default()
            },
        )
        .unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("all"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() > history + 1, "{} files", files.len());
        for (i, f) in files.iter().enumerate() {
            let to = root.join(if i < history { "history" } else { "live" });
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
        }
        create_topic(&format!("{name}-in"), 4);
        create_topic(&format!("{name}-out"), 2);
        let job = Self {
            _dir: dir,
            root,
            name: name.into(),
            failpoint: String::new(),
        };
        std::fs::write(
            job.file(),
            format!(
                r#"
name = "{name}"
parallelism = 2
[source]
type = "hybrid"
[source.files]
path = "history"
format = "csv"
key_column = 0
timestamp_column = 2
[source.kafka]
brokers = "{brokers}"
topic = "{name}-in"
format = "csv"
key_column = 0
timestamp_column = 2
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "kafka"
brokers = "{brokers}"
topic = "{name}-out"
[dead_letter]
path = "dead-letters.jsonl"
[checkpoints]
interval_ms = 100
"#,
                brokers = brokers(),
                plugin = artifacts::STATE_MACHINE,
            ),
        )
        .unwrap();
        job
    }

    pub(crate) fn file(&self) -> PathBuf {
        self.root.join(format!("{}.toml", self.name))
    }

    pub(crate) fn out(&self) -> String {
        format!("{}-out", self.name)
    }

    /// The DFA over history then live records.
    pub(crate) fn expected(&self) -> Vec<String> {
        reference_alerts(&self.root.join("all"))
    }

    /// Produce the live files (in order) to the input topic.
    pub(crate) fn produce_live(&self) -> u64 {
        produce_csv_dir(&self.root.join("live"), &format!("{}-in", self.name))
    }

    /// The phase the newest complete checkpoint was taken in (`none`
    /// when there is none yet).
    pub(crate) fn newest_phase(&self) -> String {
        self.newest().map_or("none".into(), |(_, phase)| phase)
    }

    /// The id and phase of the newest complete checkpoint.
    fn newest(&self) -> Option<(u64, String)> {
        let plan = JobFile::load(&self.file())
            .unwrap()
            .resolve(&self.name, &self.root)
            .unwrap();
        let store = StateStore::open(&plan.checkpoint.unwrap().store, &self.root).unwrap();
        manifest::list(&store, &self.name)
            .unwrap()
            .into_iter()
            .max_by_key(|f| f.manifest.id)
            .map(|f| {
                let phase = f.manifest.source.position["phase"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                (f.manifest.id, phase)
            })
    }

    /// Wait until a checkpoint newer than `than` is complete (the run
    /// made progress), within a minute.
    fn wait_for_checkpoint_after(&self, than: Option<u64>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.newest().map(|(id, _)| id) <= than {
            assert!(Instant::now() < deadline, "no new checkpoint within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn weir(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.env("WEIR_RUN_DIR", self.root.join("run"))
            .env("WEIR_LOG", "info")
            .current_dir(&self.root);
        c
    }

    /// `weir run` on the job file (a plain run resumes from the newest
    /// checkpoint).
    pub(crate) fn spawn(&self) -> Child {
        self.weir()
            .env("WEIR_FAILPOINT", &self.failpoint)
            .args(["run", self.file().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Wait until `out` holds at least `n` alerts (within `limit`), with the
/// run still going.
pub(crate) fn wait_for_output(child: &mut Child, out: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if read_values(out).len() >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended by itself with {status}: {}",
                stderr_of(child)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{n} alerts not there within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).unwrap();
    }
    err
}

/// Stop a run with SIGTERM (it drains) and wait for it.
pub(crate) fn stop(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let err = stderr_of(&mut child);
    assert!(status.success(), "the drained run: {status}: {err}");
    err
}

/// Run the job while its live records are produced (some before it
/// reaches the switch, the rest after), until its output holds as many
/// alerts as `expected`, then drain it: the output must be `expected`
/// exactly. What the run said.
pub(crate) fn run_with_live_records(job: &Hybrid, expected: &[String], what: &str) -> String {
    let mut child = job.spawn();
    std::thread::sleep(Duration::from_millis(300));
    job.produce_live();
    wait_for_output(
        &mut child,
        &job.out(),
        expected.len(),
        Duration::from_secs(90),
    );
    let said = stop(child);
    assert_same_output(&read_values(&job.out()), expected, what);
    said
}

fn dir_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

#[test]
fn history_then_live_equals_the_dfa_over_the_concatenated_stream() {
    let job = Hybrid::new("hybrid-dfa", 60_000, 2);
    assert!(dir_has_files(&job.root.join("live")));
    let expected = job.expected();
    assert!(expected.len() > 100, "{} alerts", expected.len());
    let said = run_with_live_records(&job, &expected, "history then live");
    assert!(said.contains("switching to Kafka"), "{said}");
    let dead = job.root.join("dead-letters.jsonl");
    assert!(
        !dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty(),
        "no dead letters"
    );
}

#[test]
fn kill_9_before_at_and_after_the_switch_restarts_exactly_once() {
    let mut job = Hybrid::new("hybrid-kill", 200_000, 12);
    // 50 ms after each file of the history: about a second of history
    // phase, so that kills land on both sides of the switch.
    job.failpoint = "hybrid-file-ms:50".into();
    let expected = job.expected();
    job.produce_live();
    let kill = |child: &mut Child| {
        if child.try_wait().unwrap().is_some() {
            panic!("an unbounded run ended by itself: {}", stderr_of(child));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    };
    // Phases of the newest checkpoint after each kill.
    let mut phases = Vec::new();
    // 1. Right after the first checkpoint of the history phase.
    let mut child = job.spawn();
    job.wait_for_checkpoint_after(None);
    kill(&mut child);
    phases.push(job.newest_phase());
    // 2. Every file read, switched to Kafka, no Kafka checkpoint yet.
    let out = job
        .weir()
        .args(["run", job.file().to_str().unwrap()])
        .env("WEIR_FAILPOINT", "hybrid-file-ms:50,hybrid-after-switch")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint aborted the run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hybrid-after-switch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    phases.push(job.newest_phase());
    // 3. At random moments once each run made progress (a checkpoint of
    // its own, however loaded the machine), in the live phase by now or
    // soon.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..9 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let at = Duration::from_millis((seed >> 33) % 600);
        let before = job.newest().map(|(id, _)| id);
        let mut child = job.spawn();
        job.wait_for_checkpoint_after(before);
        std::thread::sleep(at);
        kill(&mut child);
        phases.push(job.newest_phase());
    }
    println!("phases restored after each kill: {phases:?}");
    assert_eq!(phases[0], "files", "{phases:?}");
    assert_eq!(phases[1], "files", "no Kafka checkpoint before the abort");
    assert!(phases.iter().any(|p| p == "kafka"), "{phases:?}");
    let mut child = job.spawn();
    wait_for_output(
        &mut child,
        &job.out(),
        expected.len(),
        Duration::from_secs(120),
    );
    stop(child);
    assert_same_output(
        &read_values(&job.out()),
        &expected,
        "history then live, across kills",
    );
}

#[test]
fn the_history_can_be_in_s3() {
    let job = Hybrid::new("hybrid-s3", 60_000, 2);
    let prefix = crate::files::s3_prefix("hybrid-history");
    weir_tests::upload(&job.root.join("history"), &prefix);
    std::fs::remove_dir_all(job.root.join("history")).unwrap();
    let text = std::fs::read_to_string(job.file()).unwrap();
    std::fs::write(
        job.file(),
        text.replacen("path = \"history\"", &format!("path = \"{prefix}\""), 1),
    )
    .unwrap();
    run_with_live_records(&job, &job.expected(), "history from S3, then live");
}

#[test]
fn a_savepoint_after_the_switch_starts_a_plain_kafka_job() {
    let job = Hybrid::new("hybrid-to-kafka", 60_000, 2);
    // The live files in two halves: the first while the hybrid job runs,
    // the second for the Kafka job that follows it.
    let mut live: Vec<PathBuf> = std::fs::read_dir(job.root.join("live"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    live.sort();
    assert!(live.len() >= 2, "{} live files", live.len());
    let later = job.root.join("later");
    std::fs::create_dir_all(&later).unwrap();
    for f in &live[live.len() / 2..] {
        std::fs::rename(f, later.join(f.file_name().unwrap())).unwrap();
    }
    let first = job.root.join("first");
    std::fs::create_dir_all(&first).unwrap();
    for dir in ["history", "live"] {
        for e in std::fs::read_dir(job.root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, first.join(p.file_name().unwrap())).unwrap();
        }
    }
    let expected_first = reference_alerts(&first);
    let mut child = job.spawn();
    job.produce_live();
    wait_for_output(
        &mut child,
        &job.out(),
        expected_first.len(),
        Duration::from_secs(90),
    );
    stop(child);
    assert_eq!(job.newest_phase(), "kafka");

    // The same job as a plain Kafka job: a plain run resumes from the
    // hybrid job's newest checkpoint, at its Kafka offsets, with its state.
    let text = std::fs::read_to_string(job.file()).unwrap();
    let kafka_only = text
        .replace(
            "[source]\ntype = \"hybrid\"\n[source.files]\npath = \"history\"\nformat = \"csv\"\nkey_column = 0\ntimestamp_column = 2\n[source.kafka]\n",
            "[source]\ntype = \"kafka\"\nuntil = \"latest\"\n",
        );
    assert!(
        kafka_only.contains("type = \"kafka\"\nuntil"),
        "{kafka_only}"
    );
    std::fs::write(job.file(), kafka_only).unwrap();
    produce_csv_dir(&later, &format!("{}-in", job.name));
    let out = job
        .weir()
        .args(["run", job.file().to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("resuming job `hybrid-to-kafka`"), "{said}");
    assert_same_output(
        &read_values(&job.out()),
        &job.expected(),
        "hybrid, then the same job as a Kafka job",
    );
}

/// Run the job once to its end: whether it succeeded, and what it said.
pub(crate) fn run_once(job: &Hybrid) -> (bool, String) {
    let out = job
        .weir()
        .args(["run", job.file().to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), said)
}

/// Run the job once to its end, which it must reach; what it said.
pub(crate) fn run_through(job: &Hybrid) -> String {
    let (ok, said) = run_once(job);
    assert!(ok, "the run failed: {said}");
    said
}

/// Run the job once to its refusal or failure; what it said.
pub(crate) fn run_refused(job: &Hybrid) -> String {
    let (ok, said) = run_once(job);
    assert!(!ok, "the run went through: {said}");
    said
}

#[test]
fn a_topic_partitioned_another_way_than_the_files_is_refused_before_anything_runs() {
    let job = Hybrid::new("hybrid-partitioner", 60_000, 2);
    // Each live record one partition off where murmur2 of its key puts it
    // (a producer with another partitioner).
    let producer: rdkafka::producer::BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let topic = format!("{}-in", job.name);
    for line in weir_tests::csv_lines(&job.root.join("live"))
        .iter()
        .take(500)
    {
        let key = line.split(',').next().unwrap();
        let p = (weir::partition::partition_for_key(key.as_bytes(), 4) + 1) % 4;
        producer
            .send(
                rdkafka::producer::BaseRecord::to(&topic)
                    .key(key)
                    .payload(line.as_str())
                    .partition(p as i32),
            )
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    let said = run_refused(&job);
    assert!(said.contains("partition another way"), "{said}");
    assert!(read_values(&job.out()).is_empty(), "nothing written");
    assert_eq!(job.newest_phase(), "none", "no checkpoint taken");
}

#[test]
fn records_deleted_by_retention_after_the_files_end_are_refused_at_the_switch() {
    let job = Hybrid::new("hybrid-retention", 60_000, 2);
    job.produce_live();
    // Retention took the first live records of partition 0: the records
    // right after the files' end are gone.
    weir_tests::kafka::delete_records_before(&format!("{}-in", job.name), 0, 5);
    let said = run_refused(&job);
    assert!(said.contains("deleted by retention"), "{said}");
    assert!(said.contains("partition 0"), "{said}");
}
