//! Group mode (`assignment = "group"`): several `weir run` processes share a
//! 12-partition topic through the consumer group, with state in the S3 test
//! server and exactly-once output, against the real broker. The output
//! must equal the independent DFA over the input, through kill -9 of a
//! process, a process added mid-run, and a process paused past its session
//! timeout then resumed (fenced: its late writes change nothing). The
//! tests that run processes are ignored in the suite (beside the other
//! tests they overload the broker on 2 cores) and run by `scripts/soak.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::generate::{GenerateConfig, generate};
use weir_tests::kafka::{brokers, create_topic, produce_csv_dir, read_records, read_values};
use weir_tests::{artifacts, assert_same_output, reference_alerts};

/// Session timeout of the test's group members (the broker's minimum).
const SESSION_MS: u64 = 6_000;

/// A group job in a folder: `in/<part>/` holds the input files, produced
/// to `<name>-in` part by part; the state store is a fresh S3 prefix.
struct Group {
    _dir: tempfile::TempDir,
    root: PathBuf,
    name: String,
    parts: Vec<PathBuf>,
}

impl Group {
    /// `events` state-machine events in `parts` parts, plus one malformed
    /// line per file (dead letters).
    fn new(name: &str, events: u64, parts: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        generate(
            &root.join("all"),
            &GenerateConfig {
                seed: 11,
                events,
                max_address: 20_000,
                error_prob: 0.01,
                file_size: 128 << 10,
                ..GenerateConfig::default()
            },
        )
        .unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("all"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= parts * 2, "{} files", files.len());
        let per = files.len().div_ceil(parts);
        let mut dirs = Vec::new();
        for (i, chunk) in files.chunks(per).enumerate() {
            let to = root.join("in").join(format!("{i}"));
            std::fs::create_dir_all(&to).unwrap();
            for (j, f) in chunk.iter().enumerate() {
                let mut text = std::fs::read_to_string(f).unwrap();
                // Keys differ, so they land in several partitions.
                text.push_str(&format!("not-a-record-{i}-{j}\n"));
                std::fs::write(to.join(f.file_name().unwrap()), text).unwrap();
            }
            dirs.push(to);
        }
        create_topic(&format!("{name}-in"), 12);
        create_topic(&format!("{name}-out"), 4);
        create_topic(&format!("{name}-dlq"), 1);
        let store = crate::files::s3_prefix(name);
        // A group of this run only (a failed earlier run's members are gone
        // only once their session times out).
        let group = format!("{name}-{}", store.rsplit('/').next().unwrap());
        std::fs::write(
            root.join(format!("{name}.toml")),
            format!(
                r#"
name = "{name}"
[source]
type = "kafka"
brokers = "{brokers}"
topic = "{name}-in"
group_id = "{group}"
assignment = "group"
format = "csv"
key_column = 0
timestamp_column = 2
properties = {{ "session.timeout.ms" = "{SESSION_MS}", "heartbeat.interval.ms" = "500" }}
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "kafka"
brokers = "{brokers}"
topic = "{name}-out"
[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "{name}-dlq"
[state]
url = "{store}"
[checkpoints]
interval_ms = 1000
"#,
                brokers = brokers(),
                plugin = artifacts::STATE_MACHINE,
            ),
        )
        .unwrap();
        Self {
            _dir: dir,
            root,
            name: name.into(),
            parts: dirs,
        }
    }

    fn out(&self) -> String {
        format!("{}-out", self.name)
    }

    fn expected(&self) -> Vec<String> {
        reference_alerts(&self.root.join("all"))
    }

    /// How many alerts the DFA raises over parts `0..parts`.
    fn expected_upto(&self, parts: usize) -> usize {
        let dir = self.root.join(format!("upto-{parts}"));
        std::fs::create_dir_all(&dir).unwrap();
        for part in &self.parts[..parts] {
            for f in std::fs::read_dir(part).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
        reference_alerts(&dir).len()
    }

    fn produce(&self, part: usize) -> u64 {
        produce_csv_dir(&self.parts[part], &format!("{}-in", self.name))
    }

    /// A `weir run` process of the job, its log in `log-<i>.txt`.
    fn spawn(&self, i: usize) -> Child {
        let log = std::fs::File::create(self.log_path(i)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_weir-it"))
            .env("WEIR_RUN_DIR", self.root.join("run"))
            .env("WEIR_LOG", "info")
            .current_dir(&self.root)
            .args(["run", &format!("{}.toml", self.name)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Logs outlive the test's folder, to read after a failure.
    /// `weir ARGS... <job file>` beside the processes; its stdout.
    fn weir(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_weir-it"))
            .env("WEIR_RUN_DIR", self.root.join("run"))
            .current_dir(&self.root)
            .args(args)
            .arg(format!("{}.toml", self.name))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "weir {args:?}: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said
    }

    fn log_path(&self, i: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-{}-logs", self.name));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("log-{i}.txt"))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Wait until the output holds `n` alerts, every process still up.
    fn wait_for(&self, children: &mut [(usize, Child)], n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let have = read_values(&self.out()).len();
            if have >= n {
                return;
            }
            for (i, c) in children.iter_mut() {
                if let Some(status) = c.try_wait().unwrap() {
                    panic!("process {i} ended with {status}: {}", self.log(*i));
                }
            }
            assert!(
                Instant::now() < deadline,
                "{have} of {n} alerts within {limit:?}; logs:\n{}",
                children
                    .iter()
                    .map(|(i, _)| tail(&self.log(*i)))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// SIGTERM every process and wait: each drains to final checkpoints.
    fn stop_all(&self, mut children: Procs) {
        let children = std::mem::take(&mut children.0);
        for (_, c) in &children {
            signal("-TERM", c);
        }
        for (i, mut c) in children {
            let status = c.wait().unwrap();
            assert!(
                status.success(),
                "process {i}: {status}: {}",
                tail(&self.log(i))
            );
        }
    }
}

/// The test's `weir` processes; any left when it ends (a failed
/// assertion) are killed, so they do not linger in the group.
struct Procs(Vec<(usize, Child)>);

impl std::ops::Deref for Procs {
    type Target = Vec<(usize, Child)>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Procs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(sig: &str, child: &Child) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The partitions a process's log says it was assigned.
fn assigned(log: &str) -> BTreeSet<u32> {
    log.lines()
        .filter(|l| l.contains("partition assigned"))
        .filter_map(|l| {
            let at = l.find("partition=")? + "partition=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The partitions a process's log says it ran last (started, not
/// released before the final stop).
fn owned_at_end(log: &str) -> BTreeSet<u32> {
    let number = |l: &str| {
        let at = l.find("partition=")? + "partition=".len();
        l[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<u32>()
            .ok()
    };
    let mut owned = BTreeSet::new();
    for l in log.lines() {
        if l.contains("stopping: draining") {
            break;
        }
        if l.contains("partition assigned") {
            owned.extend(number(l));
        } else if l.contains("partition released")
            && let Some(p) = number(l)
        {
            owned.remove(&p);
        }
    }
    owned
}

/// How many partition runs a process's log says it runs now (started
/// less released).
fn runs_now(log: &str) -> usize {
    assignments(log).saturating_sub(
        log.lines()
            .filter(|l| l.contains("partition released"))
            .count(),
    )
}

/// How many partition runs a process's log says it started.
fn assignments(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("partition assigned"))
        .count()
}

/// Dead letters of `topic`: every malformed line, each with its origin
/// (at least once: a partition replayed after a kill may write one again).
fn check_dead_letters(topic: &str, expected: usize) -> BTreeSet<String> {
    let letters = read_records(topic);
    let origins: BTreeSet<(String, String)> = letters
        .iter()
        .map(|l| {
            let h = |k: &str| l.headers.get(k).cloned().unwrap_or_default();
            (h("weir.source.partition"), h("weir.source.offset"))
        })
        .collect();
    assert_eq!(origins.len(), expected, "one origin per malformed line");
    let mut jobs = BTreeSet::new();
    for l in &letters {
        assert!(l.value.starts_with(b"not-a-record"), "{:?}", l.value);
        for h in [
            "weir.source.topic",
            "weir.source.partition",
            "weir.source.offset",
            "weir.reason",
        ] {
            assert!(l.headers.contains_key(h), "{h} in {:?}", l.headers);
        }
        jobs.insert(l.headers["weir.job"].clone());
    }
    jobs
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
#[ignore = "three processes with twelve partition runs each beside the other tests overload the broker on 2 cores: run by scripts/soak.sh"]
fn three_processes_share_twelve_partitions_with_exactly_the_dfas_output() {
    let job = Group::new("group-three", 120_000, 2);
    let expected = job.expected();
    let mut children = Procs((0..3).map(|i| (i, job.spawn(i))).collect());
    // Once the group has settled (each process runs some of the 12
    // partitions), ownership stays put: the dead letters' writers are known.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..3).map(|i| runs_now(&job.log(i))).sum::<usize>() != 12
        || (0..3).any(|i| runs_now(&job.log(i)) == 0)
    {
        assert!(Instant::now() < deadline, "the group did not settle");
        std::thread::sleep(Duration::from_millis(100));
    }
    job.produce(0);
    std::thread::sleep(Duration::from_secs(1));
    job.produce(1);
    job.wait_for(&mut children[..], expected.len(), Duration::from_secs(120));

    // Status: every partition run of the machine, with its owner's pid.
    let status: serde_json::Value = serde_json::from_str(&job.weir(&["status", "--json"])).unwrap();
    let parts = status["partitions"].as_array().unwrap();
    let listed: BTreeSet<u64> = parts
        .iter()
        .map(|p| p["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, (0..12).collect(), "{status}");
    let pids: BTreeSet<u64> = parts.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 3, "three owners: {status}");
    assert!(
        parts.iter().all(|p| p["consumer_lag"].as_i64().is_some()),
        "{status}"
    );
    assert!(
        job.weir(&["status"])
            .contains("12 partitions run on this machine")
    );
    // A savepoint of the group job: each owner takes it for its partitions.
    let said = job.weir(&["savepoint", "trigger", "--name", "caught-up"]);
    assert!(said.contains("12 of 12 partitions"), "{said}");
    let list = job.weir(&["savepoint", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("caught-up") && l.contains("12/12")),
        "{list}"
    );

    job.stop_all(children);
    assert_same_output(&read_values(&job.out()), &expected, "three processes");
    // The same job without group mode would not continue the partitions'
    // state: refused before anything is written.
    let file = job.root.join(format!("{}.toml", job.name));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("assignment = \"group\"\n", "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-it"))
        .current_dir(&job.root)
        .env("WEIR_RUN_DIR", job.root.join("run"))
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("checkpoints of a group job"),
        "{said}"
    );
    assert_same_output(&read_values(&job.out()), &expected, "after the refused run");
    let owners: Vec<BTreeSet<u32>> = (0..3).map(|i| owned_at_end(&job.log(i))).collect();
    let all: BTreeSet<u32> = owners.iter().flatten().copied().collect();
    assert_eq!(
        all,
        (0..12).collect(),
        "every partition was run: {owners:?}"
    );
    assert!(
        owners.iter().all(|o| !o.is_empty()),
        "each process ran some: {owners:?}"
    );
    let malformed = job.parts.iter().map(|p| files_in(p)).sum();
    let jobs = check_dead_letters(&format!("{}-dlq", job.name), malformed);
    // `weir.job` names the partition run (`<job>.p<partition>`): map each
    // to the process that ran it.
    let writers: BTreeSet<usize> = jobs
        .iter()
        .filter_map(|j| j.rsplit(".p").next()?.parse::<u32>().ok())
        .filter_map(|p| owners.iter().position(|o| o.contains(&p)))
        .collect();
    assert!(
        writers.len() >= 2,
        "dead letters from several processes in one topic: {jobs:?} {owners:?}"
    );
}

#[test]
#[ignore = "four processes through kills, joins and a pause (3-5 min, heavy on 2 cores): run by scripts/soak.sh"]
fn kill_9_a_new_process_and_a_paused_one_still_give_exactly_the_dfas_output() {
    let job = Group::new("group-faults", 200_000, 4);
    let expected = job.expected();
    let mut children = Procs((0..3).map(|i| (i, job.spawn(i))).collect());
    job.produce(0);
    job.wait_for(
        &mut children[..],
        job.expected_upto(1),
        Duration::from_secs(120),
    );

    // kill -9 one process mid-run, the one running most partitions: they
    // move to the others.
    let victim = (0..children.len())
        .max_by_key(|&c| runs_now(&job.log(children[c].0)))
        .unwrap();
    let (gone, mut killed) = children.remove(victim);
    let lost = runs_now(&job.log(gone));
    let runs_before: usize = children
        .iter()
        .map(|(i, _)| assignments(&job.log(*i)))
        .sum();
    let at = Instant::now();
    killed.kill().unwrap();
    killed.wait().unwrap();
    job.produce(1);
    // How long until the others run its partitions (the figure, not a
    // limit): the session timeout, the rebalance, then each restore.
    while children
        .iter()
        .map(|(i, _)| assignments(&job.log(*i)))
        .sum::<usize>()
        < runs_before + lost
    {
        assert!(
            at.elapsed() < Duration::from_secs(90),
            "the partitions never moved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "failover: {} partitions of the killed process assigned elsewhere {} ms after \
         kill -9 (session timeout {SESSION_MS} ms)",
        lost,
        at.elapsed().as_millis()
    );

    // A fourth process joins mid-run: partitions move to it.
    children.push((3, job.spawn(3)));
    job.wait_for(
        &mut children[..],
        job.expected_upto(2),
        Duration::from_secs(120),
    );

    // Pause a process past its session timeout: its partitions move; when
    // it resumes it is fenced, and its late writes change nothing.
    let paused = (0..children.len())
        .max_by_key(|&c| runs_now(&job.log(children[c].0)))
        .unwrap();
    let paused_id = children[paused].0;
    signal("-STOP", &children[paused].1);
    job.produce(2);
    std::thread::sleep(Duration::from_millis(SESSION_MS * 2));
    signal("-CONT", &children[paused].1);
    job.produce(3);
    job.wait_for(&mut children[..], expected.len(), Duration::from_secs(300));
    // Let the resumed process settle (it rejoins the group), then stop.
    std::thread::sleep(Duration::from_secs(3));
    job.stop_all(children);
    assert_same_output(&read_values(&job.out()), &expected, "kill, join and pause");
    assert!(
        !assigned(&job.log(3)).is_empty(),
        "the new process ran partitions"
    );
    // The resumed process found its partitions gone: its group member
    // lost them, or its partition runs saw a newer owner generation.
    let said = job.log(paused_id);
    assert!(
        said.contains("lost=true") || said.contains("another process took this partition"),
        "the paused process was not fenced: {}",
        tail(&said)
    );
    let malformed = job.parts.iter().map(|p| files_in(p)).sum();
    check_dead_letters(&format!("{}-dlq", job.name), malformed);
}

#[test]
#[ignore = "two group processes beside the other tests overload the broker on 2 cores: run by scripts/soak.sh"]
fn the_kip_848_consumer_protocol_shares_the_partitions_too() {
    let job = Group::new("group-kip848", 60_000, 1);
    let file = job.root.join(format!("{}.toml", job.name));
    let text = std::fs::read_to_string(&file).unwrap();
    // The broker runs the group: no client-side session settings.
    let text = text
        .lines()
        .filter(|l| !l.starts_with("properties"))
        .collect::<Vec<_>>()
        .join("\n")
        .replacen(
            "assignment = \"group\"",
            "assignment = \"group\"\ngroup_protocol = \"consumer\"",
            1,
        );
    std::fs::write(&file, text).unwrap();
    let expected = job.expected();
    let mut children = Procs((0..2).map(|i| (i, job.spawn(i))).collect());
    job.produce(0);
    job.wait_for(&mut children[..], expected.len(), Duration::from_secs(120));
    job.stop_all(children);
    assert_same_output(&read_values(&job.out()), &expected, "KIP-848 group");
    for i in 0..2 {
        assert!(
            job.log(i).contains("protocol=Some(Consumer)"),
            "{}",
            job.log(i)
        );
    }
    let all: BTreeSet<u32> = (0..2).flat_map(|i| assigned(&job.log(i))).collect();
    assert_eq!(all, (0..12).collect());
}

#[test]
fn a_group_job_missing_what_it_needs_is_refused_saying_what() {
    let dir = tempfile::tempdir().unwrap();
    let job = |source_extra: &str, sink: &str| {
        format!(
            r#"
name = "group-refused"
[source]
type = "kafka"
brokers = "{b}"
topic = "group-refused-in"
assignment = "group"
{source_extra}
[[operators]]
name = "state-machine"
plugin = "{plugin}"
{sink}
"#,
            b = brokers(),
            plugin = artifacts::STATE_MACHINE,
        )
    };
    let refused = |text: String| {
        let file = dir.path().join("job.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_weir-it"))
            .env("WEIR_RUN_DIR", dir.path().join("run"))
            .current_dir(dir.path())
            .args(["run", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let kafka_sink = format!(
        "[sink]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"out\"",
        brokers()
    );
    let said = refused(job("", &kafka_sink));
    assert!(said.contains("needs `group_id`"), "{said}");
    let said = refused(job(
        "group_id = \"g\"",
        "[sink]\ntype = \"file\"\npath = \"out\"",
    ));
    assert!(said.contains("the sink must be a Kafka topic"), "{said}");
    let said = refused(job(
        "group_id = \"g\"\ngroup_protocol = \"eager\"",
        &kafka_sink,
    ));
    assert!(said.contains("group_protocol `eager`"), "{said}");
    assert!(!dir.path().join("out").exists(), "nothing was written");
}
