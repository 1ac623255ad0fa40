//! Checkpoints and savepoints, end to end: the `weir` binary killed with
//! SIGKILL and restarted from a savepoint must commit exactly the output of
//! an uninterrupted run; damaged savepoints are refused before any task
//! starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::Error;
use weir::checkpoint::manifest::{self, Kind};
use weir::checkpoint::store::StateStore;
use weir::config::JobFile;
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{artifacts, assert_same_output, file_source, read_output};

/// A job folder: events, job file, state, output.
pub struct Job {
    /// Keeps the folder alive.
    _dir: tempfile::TempDir,
    /// The folder.
    pub root: PathBuf,
    /// Job name (unique per test, so control address files never clash).
    pub name: String,
    /// Total events in the input.
    pub events: u64,
}

impl Job {
    /// Generate `events` events and write a job file running `plugin`.
    pub fn new(name: &str, events: u64, plugin: &str, parallelism: usize, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        generate(
            &root.join("events"),
            &GenerateConfig {
                seed: 11,
                events,
                max_address: 50_000,
                error_prob: 0.01,
                file_size: 8 << 20,
                ..GenerateConfig::default()
            },
        )
        .unwrap();
        let job = Self {
            _dir: dir,
            root,
            name: name.into(),
            events,
        };
        job.write(plugin, parallelism, extra);
        job
    }

    /// (Re)write the job file.
    pub fn write(&self, plugin: &str, parallelism: usize, extra: &str) {
        let text = format!(
            r#"
name = "{name}"
parallelism = {parallelism}
[source]
type = "files"
path = "events"
format = "csv"
key_column = 0
timestamp_column = 2
[[operators]]
name = "op"
plugin = "{plugin}"
config = {{ gap_ms = 40 }}
[sink]
type = "file"
path = "out"
[dead_letter]
path = "dead-letters.jsonl"
{extra}
"#,
            name = self.name
        );
        let text = if extra.contains("[checkpoints]") {
            text
        } else {
            format!("{text}\n[checkpoints]\ninterval_ms = 0\n")
        };
        std::fs::write(self.root.join("job.toml"), text).unwrap();
    }

    /// A small state-machine job (10k events, one task) that follows its
    /// folder: it runs until stopped.
    pub fn following(name: &str, extra: &str) -> Self {
        let job = Self::new(name, 10_000, artifacts::STATE_MACHINE, 1, extra);
        job.set_follow(true);
        job
    }

    /// Make the job's file source follow its folder (run until stopped),
    /// or read it once again.
    pub fn set_follow(&self, follow: bool) {
        let text = std::fs::read_to_string(self.file()).unwrap();
        let (once, following) = ("key_column = 0\n", "key_column = 0\nfollow = true\n");
        let text = if follow {
            text.replacen(once, following, 1)
        } else {
            text.replacen(following, once, 1)
        };
        std::fs::write(self.file(), text).unwrap();
    }

    /// The job file.
    pub fn file(&self) -> PathBuf {
        self.root.join("job.toml")
    }

    /// `weir-it` with this job's run folder.
    pub fn weir(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weir-it"));
        c.env("WEIR_RUN_DIR", self.root.join("run"))
            .env("WEIR_LOG", "warn");
        c
    }

    /// Start `weir run` (optionally from a savepoint).
    pub fn spawn(&self, from: Option<&str>) -> Child {
        let mut c = self.weir();
        c.arg("run").arg(self.file());
        if let Some(f) = from {
            c.arg("--from-savepoint").arg(f);
        }
        c.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Run `weir` to completion; panics with its stderr on failure.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.weir().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "weir {args:?} failed: {err}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &err
    }

    /// `weir diff` with `args`: its exit code (0 equal, 1 different; any
    /// other fails the test) and its standard output.
    pub fn diff(&self, args: &[&str]) -> (i32, String) {
        let out = self.weir().arg("diff").args(args).output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "weir diff {args:?} failed ({code}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The committed output.
    pub fn output(&self) -> Vec<String> {
        read_output(&self.root.join("out"))
    }

    /// The output of one uninterrupted run, in another folder.
    pub fn reference(&self) -> Vec<String> {
        let file = JobFile::load(&self.file()).unwrap();
        let mut plan = file.resolve(&self.name, &self.root).unwrap();
        plan.name = format!("{}-reference", self.name);
        let out = self.root.join("reference-out");
        plan.sink = weir::config::SinkSpec::Files(weir::config::FileSinkSpec { dir: out.clone() });
        plan.control = None;
        run(&plan, RunOptions::default()).unwrap();
        read_output(&out)
    }

    /// Wait until the running job's control endpoint answers and it has
    /// read some records.
    pub fn wait_running(&self) {
        // Generous: a large (Python) component may be compiled on first use.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            assert!(Instant::now() < deadline, "the job did not start");
            if let Ok(endpoint) =
                weir::runtime::control::find_in(&self.root.join("run"), &self.name)
                && let Ok((200, body)) = endpoint.request("GET", "/status")
            {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if v["records_read"].as_u64().unwrap_or(0) > 0 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The job's state store, as its job file configures it.
    pub fn store(&self) -> StateStore {
        let plan = JobFile::load(&self.file())
            .unwrap()
            .resolve(&self.name, &self.root)
            .unwrap();
        StateStore::open(&plan.checkpoint.unwrap().store, Path::new(".")).unwrap()
    }
}

/// Run the job, take savepoint `mid` while it runs, kill it (SIGKILL).
pub fn savepoint_then_kill(job: &Job) {
    let mut child = job.spawn(None);
    job.wait_running();
    let said = job.run_ok(&[
        "savepoint",
        "trigger",
        job.file().to_str().unwrap(),
        "--name",
        "mid",
    ]);
    assert!(said.contains("\"name\":\"mid\""), "{said}");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the job was killed, not finished");
}

/// Savepoint in the middle, SIGKILL, restore: both runs' committed output
/// equals an uninterrupted run.
pub fn stop_resume(job: &Job) {
    stop_resume_into(job, None);
}

/// As [`stop_resume`], restoring into `other_plugin` (another build, or the
/// same operator in another language) when given.
pub fn stop_resume_into(job: &Job, other_plugin: Option<(&str, usize)>) {
    let expected = job.reference();
    assert!(!expected.is_empty());
    savepoint_then_kill(job);
    let sp = manifest::select(&job.store(), &job.name, "mid")
        .unwrap()
        .manifest;
    assert_eq!(sp.kind, Kind::Savepoint);
    assert!(
        sp.source.position["file"].is_string(),
        "the savepoint is in the middle of the input"
    );

    if let Some((plugin, parallelism)) = other_plugin {
        job.write(plugin, parallelism, "");
    }
    let said = job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "mid",
    ]);
    assert!(said.contains("restored from"), "{said}");
    if other_plugin.is_some() {
        assert!(
            said.contains("restoring state into another plugin version"),
            "{said}"
        );
    }
    assert_same_output(&job.output(), &expected, "output after restore");
}

#[test]
fn savepoint_sigkill_restore_equals_uninterrupted_run() {
    let job = Job::new("sp-p1", 3_000_000, artifacts::STATE_MACHINE, 1, "");
    stop_resume(&job);
}

#[test]
fn savepoint_sigkill_restore_with_parallelism_4() {
    let job = Job::new("sp-p4", 3_000_000, artifacts::STATE_MACHINE, 4, "");
    stop_resume(&job);
}

#[test]
fn savepoint_with_pending_timers() {
    let job = Job::new("sp-timers", 2_000_000, artifacts::SESSION, 2, "");
    stop_resume(&job);
    let sp = manifest::select(&job.store(), &job.name, "mid")
        .unwrap()
        .manifest;
    let timers: u64 = sp
        .partitions
        .iter()
        .flat_map(|t| &t.operators)
        .map(|o| o.timer_count)
        .sum();
    assert!(timers > 0, "timers were pending at the savepoint");
}

#[test]
fn crash_anywhere_and_restart_from_latest() {
    let job = Job::new(
        "crash",
        2_000_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 25\nretain = 2\n",
    );
    crash_anywhere(&job);
}

/// The same through crashes with a source that reads its lines in runs
/// (CSV keyed by a column, no event time column): checkpoints taken
/// between runs resume at the right line.
#[test]
fn crash_anywhere_and_restart_from_latest_reading_lines_in_runs() {
    crash_anywhere(&runs_job("crash-runs", 2));
}

/// The same with one partition, whose batches take a run's records in
/// bulk (up to where a batch is full) instead of one at a time.
#[test]
fn crash_anywhere_and_restart_from_latest_reading_lines_in_runs_into_one_partition() {
    crash_anywhere(&runs_job("crash-runs-one", 1));
}

/// A state-machine job over 2M events without an event time column (its
/// source reads lines in runs), checkpointing every 25 ms.
fn runs_job(name: &str, parallelism: usize) -> Job {
    let job = Job::new(
        name,
        2_000_000,
        artifacts::STATE_MACHINE,
        parallelism,
        "[checkpoints]\ninterval_ms = 25\nretain = 2\n",
    );
    let text = std::fs::read_to_string(job.file()).unwrap();
    assert!(text.contains("timestamp_column = 2\n"));
    std::fs::write(job.file(), text.replacen("timestamp_column = 2\n", "", 1)).unwrap();
    job
}

/// Kill `job` at random moments, restarting from its latest checkpoint
/// each time, then let it finish: its output equals an uninterrupted run.
fn crash_anywhere(job: &Job) {
    let expected = job.reference();
    let kills = std::env::var("WEIR_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut restored = 0;
    for _ in 0..kills {
        let has_checkpoint = !manifest::list(&job.store(), &job.name).unwrap().is_empty();
        let mut child = job.spawn(has_checkpoint.then_some("latest"));
        restored += usize::from(has_checkpoint);
        weir_tests::stages::xorshift(&mut rng);
        std::thread::sleep(Duration::from_millis(20 + rng % 400));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(restored > 0, "some runs restored from a checkpoint");
    let has_checkpoint = !manifest::list(&job.store(), &job.name).unwrap().is_empty();
    let file = job.file();
    let mut args = vec!["run", file.to_str().unwrap()];
    if has_checkpoint {
        args.extend(["--from-savepoint", "latest"]);
    }
    job.run_ok(&args);
    assert_same_output(
        &job.output(),
        &expected,
        &format!("output after {kills} crashes"),
    );
    let leftovers: Vec<_> = std::fs::read_dir(job.root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".inprogress"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no in-progress files remain: {leftovers:?}"
    );
}

/// A savepoint taken from files; the job restarted from it in `follow`
/// mode while new files arrive: every record is read exactly once.
#[test]
fn savepoint_then_follow_new_files() {
    let job = Job::new("follow", 200_000, artifacts::STATE_MACHINE, 2, "");
    // Move the later files away; they arrive while the restored job runs.
    let events = job.root.join("events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&events)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let expected = job.reference();
    let total = job.events;
    // A single file: split it in two so one arrives later.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    std::fs::write(&files[0], first.join("\n") + "\n").unwrap();
    for f in &files[1..] {
        std::fs::remove_file(f).unwrap();
    }
    // Run 1 over what is there, in `follow` mode; once idle, stopped with a
    // savepoint at the end of its input.
    let file = JobFile::load(&job.file()).unwrap();
    let plan = file.resolve(&job.name, &job.root).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    let mut follow_plan = plan.clone();
    file_source(&mut follow_plan).follow = true;
    file_source(&mut follow_plan).poll_interval = Duration::from_millis(10);
    follow_plan.control = None;
    let read = counter();
    let handle = std::thread::spawn({
        let p = follow_plan.clone();
        let read = read.clone();
        move || {
            run(
                &p,
                RunOptions {
                    triggers: Some(rx),
                    progress: Some(track(read)),
                    progress_every: Some(Duration::from_millis(5)),
                    ..RunOptions::default()
                },
            )
        }
    });
    wait_for(&read, first.len() as u64);
    tx.send(weir::runtime::Trigger::Savepoint {
        name: Some("files".into()),
        stop: true,
        reply: Some(reply_tx),
    })
    .unwrap();
    let sp = reply_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let first_run = handle.join().unwrap().unwrap();
    assert_eq!(first_run.totals.records_read, first.len() as u64);
    assert_eq!(sp.source.position["line"], first.len() as u64);

    // Run 2: from the savepoint, following; the rest arrives as new files.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx2, rx2) = crossbeam_channel::unbounded();
    let read = counter();
    let handle = std::thread::spawn({
        let p = follow_plan.clone();
        let stop = stop.clone();
        let read = read.clone();
        move || {
            run(
                &p,
                RunOptions {
                    stop,
                    triggers: Some(rx2),
                    from_savepoint: Some("files".into()),
                    progress: Some(track(read)),
                    progress_every: Some(Duration::from_millis(5)),
                    ..RunOptions::default()
                },
            )
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let half = second.len() / 2;
    // Written hidden, then renamed when complete (the documented way: a
    // file the source lists is read to its end once).
    let arrive = |name: &str, lines: &[&str]| {
        let hidden = events.join(format!(".{name}"));
        std::fs::write(&hidden, lines.join("\n") + "\n").unwrap();
        std::fs::rename(&hidden, events.join(name)).unwrap();
    };
    arrive("events-000001.csv", &second[..half]);
    std::thread::sleep(Duration::from_millis(100));
    arrive("events-000002.csv", &second[half..]);
    wait_for(&read, second.len() as u64);
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    tx2.send(weir::runtime::Trigger::Savepoint {
        name: Some("end".into()),
        stop: true,
        reply: Some(reply_tx),
    })
    .unwrap();
    reply_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let second_run = handle.join().unwrap().unwrap();
    assert_eq!(
        first_run.totals.records_read + second_run.totals.records_read,
        total,
        "every record read exactly once"
    );
    // Timers and alerts: the committed output equals one bounded run.
    assert_same_output(&job.output(), &expected, "output of both runs");
}

fn counter() -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    std::sync::Arc::default()
}

/// A progress callback that publishes the records read so far.
fn track(read: std::sync::Arc<std::sync::atomic::AtomicU64>) -> weir::job::ProgressFn {
    Box::new(move |p| read.store(p.now.records_read, std::sync::atomic::Ordering::Relaxed))
}

/// Wait (bounded) until `read` reaches `n`.
fn wait_for(read: &std::sync::atomic::AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the job did not read {n} records in time"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Build a job with a savepoint `good` (taken on an event-time schedule and
/// renamed) and return it with the savepoint's folder.
pub fn job_with_savepoint(name: &str) -> (Job, PathBuf) {
    let job = Job::new(
        name,
        300_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 0\nsavepoint_every_event_time_ms = 100000\n",
    );
    job.run_ok(&["run", job.file().to_str().unwrap()]);
    // The event-time savepoints (the run also ends with a checkpoint).
    let mut all = manifest::list(&job.store(), &job.name).unwrap();
    all.retain(|f| f.manifest.kind == Kind::Savepoint);
    let names: Vec<&str> = all.iter().map(|f| f.manifest.name.as_str()).collect();
    // 300k events at 1 per ms: boundaries every 100 s of event time.
    assert!(names.len() >= 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("et-")), "{names:?}");
    for f in &all {
        assert_eq!(f.manifest.kind, Kind::Savepoint);
        assert!(f.manifest.watermark < 100_000 * (f.manifest.watermark / 100_000 + 1));
    }
    let dir = job.root.join("weir-state").join(&all[0].folder);
    (job, dir)
}

fn refused(job: &Job, from: &str) -> String {
    let out_before = job.output();
    let file = JobFile::load(&job.file()).unwrap();
    let plan = file.resolve(&job.name, &job.root).unwrap();
    let err = run(
        &plan,
        RunOptions {
            from_savepoint: Some(from.into()),
            ..RunOptions::default()
        },
    )
    .expect_err("a damaged savepoint must be refused");
    assert_same_output(&job.output(), &out_before, "output after a refused restore");
    assert!(matches!(err, Error::Savepoint { .. }), "{err:?}");
    err.to_string()
}

fn blob(dir: &Path) -> PathBuf {
    dir.join("partition-0001").join("op-0-op.state")
}

#[test]
fn corrupt_savepoints_are_refused_before_any_task_starts() {
    let (job, dir) = job_with_savepoint("corrupt");
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let original = std::fs::read(blob(&dir)).unwrap();
    assert!(original.len() > 100);

    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x40;
    std::fs::write(blob(&dir), &flipped).unwrap();
    let e = refused(&job, &name);
    assert!(e.contains("op-0-op.state is corrupt"), "{e}");

    std::fs::write(blob(&dir), &original[..original.len() - 7]).unwrap();
    let e = refused(&job, &name);
    assert!(e.contains("truncated"), "{e}");

    std::fs::remove_file(blob(&dir)).unwrap();
    let e = refused(&job, &name);
    assert!(e.contains("op-0-op.state is missing"), "{e}");
    std::fs::write(blob(&dir), &original).unwrap();

    // A manifest of another job, put where this job's savepoints are.
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replace("\"job\": \"corrupt\"", "\"job\": \"someone-else\""),
    )
    .unwrap();
    let e = refused(&job, &name);
    assert!(e.contains("belongs to job `someone-else`"), "{e}");

    // State written by another plugin with a state version this one does
    // not read.
    let other = text
        .replace("\"state_version\": 1", "\"state_version\": 7")
        .replace("\"plugin_digest\": \"", "\"plugin_digest\": \"0000");
    std::fs::write(&manifest_path, other).unwrap();
    let e = refused(&job, &name);
    assert!(
        e.contains("state version 7") && e.contains("[1]") && e.contains("no version meets"),
        "{e}"
    );
    std::fs::write(&manifest_path, &text).unwrap();

    // The intact savepoint restores.
    let file = JobFile::load(&job.file()).unwrap();
    let plan = file.resolve(&job.name, &job.root).unwrap();
    run(
        &plan,
        RunOptions {
            from_savepoint: Some(name.clone()),
            ..RunOptions::default()
        },
    )
    .unwrap();
}

#[test]
fn latest_skips_a_checkpoint_without_manifest() {
    let (job, dir) = job_with_savepoint("latest");
    let newest = manifest::select(&job.store(), &job.name, "latest").unwrap();
    // An incomplete checkpoint with a higher id: blobs but no manifest.
    let incomplete = job
        .root
        .join("weir-state/jobs/latest/checkpoints/9999999999/task-0000");
    std::fs::create_dir_all(&incomplete).unwrap();
    std::fs::copy(blob(&dir), incomplete.join("op-0-op.state")).unwrap();
    let again = manifest::select(&job.store(), &job.name, "latest").unwrap();
    assert_eq!(again.folder, newest.folder);
    // before:TIME picks by event time.
    let all = manifest::list(&job.store(), &job.name).unwrap();
    let second = &all[1].manifest;
    let picked = manifest::select(
        &job.store(),
        &job.name,
        &format!("before:{}", second.watermark),
    )
    .unwrap();
    assert_eq!(picked.manifest.name, all[0].manifest.name);
    // The CLI lists and shows them, and deletes one.
    let listed = job.run_ok(&["savepoint", "list", job.file().to_str().unwrap()]);
    assert!(
        listed.contains(&all[0].manifest.name) && listed.contains("savepoint"),
        "{listed}"
    );
    let shown = job.run_ok(&[
        "savepoint",
        "show",
        job.file().to_str().unwrap(),
        &all[0].manifest.name,
    ]);
    assert!(shown.contains("\"plugin_digest\""), "{shown}");
    // Keys are listed without the plugin, from the keyed state envelope.
    let keys = job.run_ok(&[
        "savepoint",
        "show",
        job.file().to_str().unwrap(),
        &all[0].manifest.name,
        "--keys",
        "--limit",
        "3",
    ]);
    let counted: u64 = keys
        .lines()
        .filter_map(|l| {
            l.split(", ")
                .nth(1)?
                .strip_suffix(" keys")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(counted > 100, "{keys}");
    assert_eq!(
        keys.lines().filter(|l| l.starts_with("  ")).count(),
        6,
        "3 keys listed per task: {keys}"
    );
    job.run_ok(&[
        "savepoint",
        "delete",
        job.file().to_str().unwrap(),
        &all[0].manifest.name,
    ]);
    assert_eq!(
        manifest::list(&job.store(), &job.name).unwrap().len(),
        all.len() - 1
    );
}

/// The stop/resume test against a real S3-compatible server on 127.0.0.1
/// (`scripts/s3-server.sh` starts one and exports `WEIR_S3_URL` and the
/// `AWS_*` settings; `scripts/test.sh` does that for the suite).
#[test]
fn savepoint_sigkill_restore_on_s3() {
    let url = std::env::var("WEIR_S3_URL").expect(
        "WEIR_S3_URL is not set: start the S3 test server with \
         `eval \"$(scripts/s3-server.sh start)\"` (scripts/test.sh does)",
    );
    let prefix = format!(
        "{}/run-{}-{}",
        url.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let job = Job::new(
        "sp-s3",
        3_000_000,
        artifacts::STATE_MACHINE,
        2,
        &format!("[state]\nurl = \"{prefix}\"\n"),
    );
    stop_resume(&job);
    let all = manifest::list(&job.store(), &job.name).unwrap();
    assert!(
        all.iter().any(|f| f.manifest.name == "mid"),
        "the savepoint is in S3"
    );
    assert!(job.store().url().starts_with("s3://"));
    assert!(
        !job.root.join("weir-state").exists(),
        "nothing was written to a local folder"
    );
}

#[test]
fn a_restored_job_keeps_the_event_time_savepoints_it_passes_again() {
    let (job, _) = job_with_savepoint("ids");
    let before = manifest::list(&job.store(), &job.name).unwrap();
    // The savepoints (each run also ends with its final checkpoint).
    let manifests = |job: &Job| -> Vec<String> {
        manifest::list(&job.store(), &job.name)
            .unwrap()
            .iter()
            .filter(|f| f.manifest.kind == Kind::Savepoint)
            .map(|f| {
                std::fs::read_to_string(
                    job.root
                        .join("weir-state")
                        .join(&f.folder)
                        .join("manifest.json"),
                )
                .unwrap()
            })
            .collect()
    };
    let kept = manifests(&job);
    // Restore the oldest savepoint: the schedule passes the later ones
    // again; savepoints are never replaced, so they stay as they were.
    let oldest = &before[0].manifest.name;
    let said = job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        oldest,
    ]);
    assert!(said.contains("restored from"), "{said}");
    let after = manifest::list(&job.store(), &job.name).unwrap();
    let ids = |l: &[manifest::Found]| -> Vec<(String, u64)> {
        l.iter()
            .filter(|f| f.manifest.kind == Kind::Savepoint)
            .map(|f| (f.manifest.name.clone(), f.manifest.id))
            .collect()
    };
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(manifests(&job), kept, "every savepoint byte-identical");
}

#[test]
fn a_restored_job_numbers_new_checkpoints_after_the_newest() {
    let (job, _) = job_with_savepoint("ids-after");
    let before = manifest::list(&job.store(), &job.name).unwrap();
    let newest = before.iter().map(|f| f.manifest.id).max().unwrap();
    // Restore the oldest savepoint and take a new savepoint in that run
    // (the event-time ones it passes again are kept as they were, see
    // above): ids continue after the newest of the job, not the restored.
    let oldest = before[0].manifest.name.clone();
    let mut plan = JobFile::load(&job.file())
        .unwrap()
        .resolve(&job.name, &job.root)
        .unwrap();
    plan.control = None;
    let (tx, rx) = crossbeam_channel::unbounded();
    tx.send(weir::runtime::Trigger::Savepoint {
        name: Some("after-restore".into()),
        stop: false,
        reply: None,
    })
    .unwrap();
    let report = run(
        &plan,
        RunOptions {
            from_savepoint: Some(oldest.clone()),
            triggers: Some(rx),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert!(report.restored_from.is_some());
    let after = manifest::list(&job.store(), &job.name).unwrap();
    let retaken: Vec<u64> = after
        .iter()
        .filter(|f| !before.iter().any(|b| b.folder == f.folder))
        .map(|f| f.manifest.id)
        .collect();
    assert!(!retaken.is_empty(), "the new savepoint was taken");
    assert!(
        retaken.iter().all(|&id| id > newest),
        "{retaken:?} after {newest}"
    );
}

/// A savepoint asked for through the library API with a name the store
/// cannot hold is refused with the reason, takes neither a savepoint nor a
/// stop, and the job goes on: a later savepoint with a good name works.
#[test]
fn a_refused_savepoint_name_from_the_library_leaves_the_job_running() {
    let job = Job::following("bad-name", "");
    let file = JobFile::load(&job.file()).unwrap();
    let mut plan = file.resolve(&job.name, &job.root).unwrap();
    plan.control = None;
    let (tx, rx) = crossbeam_channel::unbounded();
    let read = counter();
    let handle = std::thread::spawn({
        let read = read.clone();
        move || {
            run(
                &plan,
                RunOptions {
                    triggers: Some(rx),
                    progress: Some(track(read)),
                    progress_every: Some(Duration::from_millis(5)),
                    ..RunOptions::default()
                },
            )
        }
    });
    wait_for(&read, job.events);
    let ask = |name: &str, stop: bool| {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        tx.send(weir::runtime::Trigger::Savepoint {
            name: Some(name.into()),
            stop,
            reply: Some(reply_tx),
        })
        .unwrap();
        reply_rx.recv_timeout(Duration::from_secs(30)).unwrap()
    };
    let refused = ask("../escape", true).unwrap_err();
    assert!(refused.contains("savepoint name"), "{refused}");
    assert!(
        !handle.is_finished(),
        "a refused savepoint does not stop the job"
    );
    let sp = ask("good", true).expect("a good name is taken");
    assert_eq!(sp.name, "good");
    let report = handle.join().unwrap().unwrap();
    assert_eq!(report.totals.records_read, job.events);
    let names: Vec<String> = manifest::list(&job.store(), &job.name)
        .unwrap()
        .into_iter()
        .filter(|f| f.manifest.kind == Kind::Savepoint)
        .map(|f| f.manifest.name)
        .collect();
    assert_eq!(names, ["good"], "nothing was written for the refused name");
}

/// Objects over the part size go to S3 in a multipart upload and read back
/// whole (S3 refuses a single PUT over 5 GiB; a checkpoint blob may be
/// larger). Parts of 5 MiB here, S3's smallest, for a 13 MiB object.
#[test]
fn a_large_object_goes_to_s3_in_parts_and_reads_back_whole() {
    let url = std::env::var("WEIR_S3_URL").expect(
        "WEIR_S3_URL is not set: start the S3 test server with \
         `eval \"$(scripts/s3-server.sh start)\"` (scripts/test.sh does)",
    );
    let spec = weir::checkpoint::store::StoreSpec {
        url: format!(
            "{}/multipart-{}",
            url.trim_end_matches('/'),
            std::process::id()
        ),
        ..Default::default()
    };
    let store = StateStore::open(&spec, Path::new(".")).unwrap();
    let big: Vec<u8> = (0..13u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let small = b"small".to_vec();
    store
        .put_all_in_parts(
            vec![
                ("big".into(), big.clone().into()),
                ("small".into(), small.clone().into()),
            ],
            5 << 20,
        )
        .unwrap();
    assert_eq!(store.get("big").unwrap().as_deref(), Some(&big[..]));
    assert_eq!(store.get("small").unwrap().as_deref(), Some(&small[..]));
    let listed = store.list("").unwrap();
    assert!(
        listed.contains(&("big".to_string(), big.len() as u64)),
        "{listed:?}"
    );
    store.delete_prefix("").unwrap();
}

#[test]
fn the_run_summary_counts_event_time_savepoints_as_savepoints_not_checkpoints() {
    let job = Job::new(
        "summary-counts",
        300_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 0\nsavepoint_every_event_time_ms = 100000\n",
    );
    let said = job.run_ok(&["run", job.file().to_str().unwrap()]);
    let all = manifest::list(&job.store(), &job.name).unwrap();
    let taken = all
        .iter()
        .filter(|f| f.manifest.kind == Kind::Savepoint)
        .count();
    assert!(taken >= 2, "event-time savepoints were taken: {said}");
    assert_eq!(all.len(), taken + 1, "and the final checkpoint");
    assert!(
        said.contains(&format!(" 1 checkpoints, {taken} savepoints,")),
        "{taken} savepoints and the final checkpoint in the summary: {said}"
    );
}
