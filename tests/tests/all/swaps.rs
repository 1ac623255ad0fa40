//! Hot swaps and what-if forks, end to end with the `weir` binary: a
//! running job takes a new plugin version at a barrier (`weir plugin
//! swap`), a failing version is rolled back with no record lost or written
//! twice, crashes during swaps restart on the version the checkpoint
//! names, and `weir fork` + `weir diff` compare a new version with the old
//! one over the same history.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir::runtime::control::Endpoint;
use weir_tests::{artifacts, assert_same_output, read_output};

use crate::savepoints::{Job, savepoint_then_kill};

/// The state-machine component under another digest (same code).
pub(crate) use weir_tests::state_machine_variant as variant;

/// Hex SHA-256 of a file.
pub(crate) fn digest(path: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A job that follows its input folder, whose input arrives in pieces.
pub(crate) struct Fed {
    /// The job.
    pub(crate) job: Job,
    /// The output of one uninterrupted run over the whole input.
    pub(crate) expected: Vec<String>,
    /// The input, in pieces.
    pub(crate) pieces: Vec<Vec<String>>,
    /// Pieces written so far.
    pub(crate) next: usize,
}

impl Fed {
    /// `events` events in `pieces` files; only the first is there yet.
    pub(crate) fn new(
        name: &str,
        events: u64,
        parallelism: usize,
        extra: &str,
        pieces: usize,
    ) -> Self {
        let job = Job::new(name, events, artifacts::STATE_MACHINE, parallelism, extra);
        let expected = job.reference();
        let events_dir = job.root.join("events");
        let lines = weir_tests::csv_lines(&events_dir);
        std::fs::remove_dir_all(&events_dir).unwrap();
        std::fs::create_dir_all(&events_dir).unwrap();
        let per = lines.len().div_ceil(pieces);
        let pieces = lines.chunks(per).map(<[String]>::to_vec).collect();
        job.set_follow(true);
        let text = std::fs::read_to_string(job.file()).unwrap();
        std::fs::write(
            job.file(),
            text.replace("follow = true\n", "follow = true\npoll_interval_ms = 10\n"),
        )
        .unwrap();
        let mut fed = Self {
            job,
            expected,
            pieces,
            next: 0,
        };
        fed.feed();
        fed
    }

    /// Write the next piece (hidden, then renamed: a file the source lists
    /// is complete).
    pub(crate) fn feed(&mut self) {
        let events = self.job.root.join("events");
        let name = format!("events-{:06}.csv", self.next);
        let hidden = events.join(format!(".{name}"));
        std::fs::write(&hidden, self.pieces[self.next].join("\n") + "\n").unwrap();
        std::fs::rename(&hidden, events.join(name)).unwrap();
        self.next += 1;
    }

    pub(crate) fn lines_fed(&self) -> u64 {
        self.pieces[..self.next]
            .iter()
            .map(|p| p.len() as u64)
            .sum()
    }
}

pub(crate) fn endpoint(job: &Job) -> Endpoint {
    weir::runtime::control::find_in(&job.root.join("run"), &job.name).unwrap()
}

pub(crate) fn status(job: &Job) -> serde_json::Value {
    let (code, body) = endpoint(job).request("GET", "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Wait until the running job has read at least `n` records.
pub(crate) fn wait_read(job: &Job, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(job)["records_read"].as_u64().unwrap_or(0) < n {
        assert!(
            Instant::now() < deadline,
            "the job did not read {n} records"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until swap `seq` is promoted or rolled back; its record.
pub(crate) fn outcome(job: &Job, seq: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(job);
        let r = s["swaps"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["seq"] == seq).cloned());
        if let Some(r) = r
            && matches!(r["outcome"].as_str(), Some("promoted" | "rolled_back"))
        {
            return r;
        }
        assert!(Instant::now() < deadline, "swap {seq} has no outcome: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `weir plugin swap ... --no-wait`.
pub(crate) fn swap(job: &Job, plugin: &Path, batches: u32) -> Output {
    swap_command(job, plugin, batches).output().unwrap()
}

pub(crate) fn swap_command(job: &Job, plugin: &Path, batches: u32) -> std::process::Command {
    let mut c = job.weir();
    c.args(["plugin", "swap"])
        .arg(job.file())
        .args(["--operator", "op", "--plugin"])
        .arg(plugin)
        .args(["--probation-batches", &batches.to_string(), "--no-wait"]);
    c
}

pub(crate) fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Stop the job with a final savepoint; it must exit cleanly.
pub(crate) fn stop(job: &Job, mut child: Child) {
    job.run_ok(&["stop", job.file().to_str().unwrap(), "--savepoint"]);
    let status = child.wait().unwrap();
    assert!(status.success(), "stopped cleanly: {status}");
}

/// `weir fork` of `job` from savepoint `from` with `plugin`, into folder
/// `dir` of the job's; the folder.
pub(crate) fn fork_into(job: &Job, from: &str, plugin: &str, dir: &str) -> PathBuf {
    let out = job.root.join(dir);
    job.run_ok(&[
        "fork",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        from,
        "--plugin",
        plugin,
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

/// `all` without one of each line of `some` (a multiset difference).
pub(crate) fn without(all: &[String], some: &[String]) -> Vec<String> {
    let mut rest = all.to_vec();
    for l in some {
        let i = rest.iter().position(|a| a == l).unwrap();
        rest.remove(i);
    }
    rest
}

/// The plugin digest the newest checkpoint or savepoint names.
pub(crate) fn latest_digest(job: &Job) -> Option<String> {
    let all = manifest::list(&job.store(), &job.name).unwrap();
    all.last()
        .map(|f| f.manifest.partitions[0].operators[0].plugin_digest.clone())
}

/// Swap to the same logic under another digest in the middle of the
/// input; the output is exactly the uninterrupted run's.
fn same_logic_swap(name: &str, parallelism: usize) {
    let mut fed = Fed::new(name, 400_000, parallelism, "", 4);
    let job = &fed.job;
    let child = job.spawn(None);
    job.wait_running();
    wait_read(job, fed.lines_fed());
    let new = variant(&job.root, "b");
    let o = swap(job, &new, 4);
    assert!(o.status.success(), "swap: {}", text(&o));
    assert!(text(&o).contains("probation"), "{}", text(&o));
    fed.feed();
    let job = &fed.job;
    let r = outcome(job, 1);
    assert_eq!(r["outcome"], "promoted", "{r}");
    let pause = &r["pause"];
    for k in ["snapshot_ms", "instantiate_ms", "restore_ms", "total_ms"] {
        assert!(pause[k].as_f64().is_some(), "pause reports {k}: {r}");
    }
    let new_digest = digest(new.to_str().unwrap());
    assert_eq!(status(job)["operators"][0], new_digest.as_str());
    fed.feed();
    wait_read(&fed.job, fed.lines_fed());
    // `weir plugin rollback` swaps back to the version before the swap
    // (kept in the store), with its own probation, while input flows.
    let job = &fed.job;
    let rollback = job
        .weir()
        .args(["plugin", "rollback"])
        .arg(job.file())
        .args(["--operator", "op", "--probation-batches", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while status(job)["swaps"].as_array().map_or(0, Vec::len) < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    fed.feed();
    let said = rollback.wait_with_output().unwrap();
    assert!(said.status.success(), "rollback: {}", text(&said));
    let job = &fed.job;
    let original = digest(artifacts::STATE_MACHINE);
    assert_eq!(status(job)["operators"][0], original.as_str());
    wait_read(job, fed.lines_fed());
    stop(job, child);
    assert_same_output(
        &job.output(),
        &fed.expected,
        "output with a swap and a rollback",
    );
    assert_eq!(latest_digest(job).as_deref(), Some(original.as_str()));
    let history = job.run_ok(&["plugin", "history", job.file().to_str().unwrap()]);
    assert!(
        history.contains("swap 1 swap") && history.contains(&new_digest[..12]),
        "{history}"
    );
    assert!(history.contains("swap 2 rollback"), "{history}");
    assert_eq!(
        history.matches("promoted").count(),
        4,
        "two promoted swaps: {history}"
    );
}

#[test]
fn a_swap_to_the_same_logic_keeps_the_output_exactly() {
    same_logic_swap("swap-p1", 1);
}

#[test]
fn a_swap_to_the_same_logic_keeps_the_output_exactly_at_parallelism_4() {
    same_logic_swap("swap-p4", 4);
}

/// Swap to `plugin`, which fails (`fault` in the operator's config picks
/// how): rolled back, the job goes on, the output is exactly the
/// uninterrupted run's, and the status says why.
fn rolled_back(name: &str, plugin: &str, fault: &str, cause: &[&str]) {
    let extra = "[engine]\ncall_timeout_ms = 1000\nmemory_mb = 128\n";
    let mut fed = Fed::new(name, 200_000, 2, extra, 3);
    let text_file = std::fs::read_to_string(fed.job.file()).unwrap();
    std::fs::write(
        fed.job.file(),
        text_file.replace("gap_ms = 40", &format!("gap_ms = 40, fault = \"{fault}\"")),
    )
    .unwrap();
    let job = &fed.job;
    let child = job.spawn(None);
    job.wait_running();
    wait_read(job, fed.lines_fed());
    let o = swap(job, Path::new(plugin), 4);
    assert!(o.status.success(), "swap request: {}", text(&o));
    fed.feed();
    let job = &fed.job;
    let r = outcome(job, 1);
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    let why = r["cause"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        cause.iter().any(|c| why.contains(c)),
        "the cause names the failure ({cause:?}): {why}"
    );
    let original = digest(artifacts::STATE_MACHINE);
    assert_eq!(status(job)["operators"][0], original.as_str());
    fed.feed();
    wait_read(&fed.job, fed.lines_fed());
    let job = &fed.job;
    stop(job, child);
    assert_same_output(&job.output(), &fed.expected, "output after a rollback");
    assert_eq!(latest_digest(job).as_deref(), Some(original.as_str()));
}

#[test]
fn a_version_whose_restore_traps_is_rolled_back() {
    rolled_back(
        "swap-restore-trap",
        artifacts::RESTORE_TRAP,
        "",
        &["restore"],
    );
}

#[test]
fn a_version_that_traps_on_its_first_batch_is_rolled_back() {
    rolled_back(
        "swap-trap",
        artifacts::SWAP_FAULT,
        "trap",
        &["trap", "panic", "unreachable"],
    );
}

#[test]
fn a_version_over_its_memory_cap_is_rolled_back() {
    rolled_back("swap-hog", artifacts::SWAP_FAULT, "hog", &["memory"]);
}

#[test]
fn a_version_past_its_deadline_is_rolled_back() {
    rolled_back(
        "swap-spin",
        artifacts::SWAP_FAULT,
        "spin",
        &["deadline", "interrupt"],
    );
}

#[test]
fn a_version_that_cannot_read_the_state_is_refused_before_anything_pauses() {
    let fed = Fed::new("swap-incompatible", 50_000, 2, "", 1);
    let job = &fed.job;
    let child = job.spawn(None);
    job.wait_running();
    wait_read(job, fed.lines_fed());
    let before = status(job);
    let o = swap(job, Path::new(artifacts::INCOMPATIBLE), 4);
    assert!(!o.status.success(), "refused");
    let said = text(&o);
    assert!(
        said.contains("cannot read the running state") && said.contains("version 1"),
        "{said}"
    );
    let after = status(job);
    assert_eq!(
        after["checkpoints_completed"], before["checkpoints_completed"],
        "no barrier: the job never paused"
    );
    assert_eq!(after["swaps"], serde_json::json!([]), "{after}");
    assert!(
        manifest::list(&job.store(), &job.name)
            .unwrap()
            .iter()
            .all(|f| !f.manifest.name.starts_with("swap-")),
        "no swap savepoint"
    );
    stop(job, child);
    assert_same_output(&job.output(), &fed.expected, "output");
}

/// SIGKILL at random moments while swaps come and go; each restart from
/// `latest` runs the version that checkpoint names, and the output is
/// exactly once.
#[test]
fn kill_9_during_swaps_restarts_on_the_version_the_checkpoint_names() {
    // scripts/soak.sh runs 100 (WEIR_CRASH_RUNS).
    let kills: usize = std::env::var("WEIR_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut fed = Fed::new(
        "swap-crash",
        24_000 * (kills as u64 + 2),
        2,
        "[checkpoints]\ninterval_ms = 50\n",
        2 * kills + 2,
    );
    let original = PathBuf::from(artifacts::STATE_MACHINE);
    let versions = [
        original.clone(),
        variant(&fed.job.root, "b"),
        variant(&fed.job.root, "c"),
    ];
    let digests: Vec<String> = versions
        .iter()
        .map(|v| digest(v.to_str().unwrap()))
        .collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut restored = 0;
    // Restarts that resumed on a version a swap brought in.
    let mut swapped_in = 0;
    for i in 0..kills {
        let named = latest_digest(&fed.job);
        let mut child = fed.job.spawn(named.is_some().then_some("latest"));
        if i > 0 {
            fed.feed();
        }
        let job = &fed.job;
        job.wait_running();
        let running = status(job)["operators"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let expected = named.clone().unwrap_or_else(|| digests[0].clone());
        assert_eq!(
            running, expected,
            "run {i} restored the checkpoint's version"
        );
        restored += usize::from(named.is_some());
        swapped_in += usize::from(running != digests[0]);
        let next = versions
            .iter()
            .zip(&digests)
            .find(|(_, d)| **d != running)
            .map(|(v, _)| v)
            .unwrap();
        let mut swapping = swap_command(job, next, 2)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Input during the probation: a swap is promoted only on evidence.
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(3)
            && !status(&fed.job)["swaps"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r["outcome"] == "probation" && r["ended_ms"].is_null())
            })
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        fed.feed();
        weir_tests::stages::xorshift(&mut rng);
        std::thread::sleep(Duration::from_millis(rng % 800));
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = swapping.wait();
    }
    assert!(restored > 0, "some runs restored from a checkpoint");
    println!("{restored} restores, {swapped_in} on a swapped-in version");
    assert!(
        swapped_in > 0,
        "some restarts resumed on a version a swap brought in"
    );
    // The rest of the input, read to its end by a last run from `latest`.
    while fed.next < fed.pieces.len() {
        fed.feed();
    }
    let job = &fed.job;
    job.set_follow(false);
    let named = latest_digest(job);
    let file = job.file();
    let mut args = vec!["run", file.to_str().unwrap()];
    if named.is_some() {
        args.extend(["--from-savepoint", "latest"]);
    }
    job.run_ok(&args);
    assert_same_output(
        &job.output(),
        &fed.expected,
        &format!("output after {kills} kills during swaps"),
    );
    let history = job.run_ok(&["plugin", "history", file.to_str().unwrap()]);
    println!("{history}");
    assert!(history.contains("swap 1"), "{history}");
    assert!(
        history.matches("promoted at").count() > 0,
        "some swaps were promoted before a kill: {history}"
    );
}

/// A fork from a savepoint with a plugin that formats the alerts of one
/// state differently: the diff reports exactly those alerts as changed;
/// a fork with the job's own plugin is the job's output after the
/// savepoint, and diffs equal.
#[test]
fn a_fork_with_a_new_plugin_diffs_exactly_the_changed_alerts() {
    // The job reads the first half and stops with savepoint `mid`; its
    // committed output then is what it emitted before `mid`. From `mid` it
    // reads the rest.
    let mut fed = Fed::new("fork", 300_000, 2, "", 2);
    let mut child = fed.job.spawn(None);
    fed.job.wait_running();
    wait_read(&fed.job, fed.lines_fed());
    let file = fed.job.file();
    fed.job.run_ok(&[
        "stop",
        file.to_str().unwrap(),
        "--savepoint",
        "--name",
        "mid",
    ]);
    assert!(child.wait().unwrap().success());
    let before = fed.job.output();
    fed.feed();
    let job = &fed.job;
    job.set_follow(false);
    job.run_ok(&["run", file.to_str().unwrap(), "--from-savepoint", "mid"]);
    let all = job.output();
    assert_same_output(&all, &fed.expected, "the job's output");
    // What the job emitted after the savepoint.
    let after = without(&all, &before);
    assert!(!after.is_empty(), "the savepoint is not at the end");
    let fork = |plugin: &str, out: &str| fork_into(job, "mid", plugin, out);
    let same = fork(artifacts::STATE_MACHINE, "fork-same");
    assert_same_output(
        &read_output(&same),
        &{
            let mut a = after.clone();
            a.sort();
            a
        },
        "a fork with the same plugin is the job's output after the savepoint",
    );
    let new = fork(artifacts::REFORMAT, "fork-new");
    // `weir diff` exits 1 when the outputs differ, 0 when they are equal.
    let diff = |a: &Path, b: &Path| {
        let args = [
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--key",
            "address",
            "--json",
        ];
        let (code, out) = job.diff(&args);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let equal = ["changed", "missing", "extra"]
            .iter()
            .all(|k| report[*k] == 0);
        assert_eq!(code, if equal { 0 } else { 1 }, "{report}");
        out
    };
    let report: serde_json::Value = serde_json::from_str(&diff(&same, &new)).unwrap();
    let in_y = after
        .iter()
        .filter(|l| l.contains("\"state\":\"Y\""))
        .count() as u64;
    assert!(in_y > 0, "some alerts are in state Y");
    assert_eq!(report["changed"], in_y, "{report}");
    assert_eq!(report["equal"], after.len() as u64 - in_y, "{report}");
    assert_eq!(
        (report["missing"].as_u64(), report["extra"].as_u64()),
        (Some(0), Some(0))
    );
    let example = &report["changed_examples"][0];
    assert!(
        example["a"].as_str().unwrap().contains("\"state\":\"Y\"")
            && example["b"]
                .as_str()
                .unwrap()
                .contains("\"expected\":\"e\""),
        "{example}"
    );
    // The same inputs give the same report.
    assert_eq!(
        diff(&same, &new),
        diff(&same, &new),
        "the report is deterministic"
    );
    // `--until`: the fork stops before the first record at that event time.
    let second = &fed.pieces[1];
    let time = |l: &String| l.split(',').nth(2).unwrap().parse::<i64>().unwrap();
    let end = time(&second[second.len() / 2]);
    let read = second.iter().take_while(|l| time(l) < end).count();
    let until = job.root.join("fork-until");
    let said = job.run_ok(&[
        "fork",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "mid",
        "--plugin",
        artifacts::STATE_MACHINE,
        "--out",
        until.to_str().unwrap(),
        "--until",
        &end.to_string(),
    ]);
    assert!(said.contains(&format!(": {read} records in")), "{said}");
    let partial = read_output(&until);
    assert!(!partial.is_empty() && partial.len() < after.len());
    let equal: serde_json::Value =
        serde_json::from_str(&diff(&same, &fork(artifacts::STATE_MACHINE, "fork-same-2"))).unwrap();
    assert_eq!(equal["equal"], after.len() as u64, "{equal}");
    assert_eq!(equal["changed"], 0);
}

/// A rollback in a chain of two operators: the swapped one goes back to
/// its old instance, and the other one (which ran on during the
/// probation) back to its state at the swap barrier.
#[test]
fn a_rollback_in_a_chain_restores_every_operator_to_the_barrier() {
    let extra = "[engine]\ncall_timeout_ms = 1000\nmemory_mb = 128\n";
    let mut fed = Fed::new("swap-chain", 200_000, 2, extra, 3);
    let text_file = std::fs::read_to_string(fed.job.file()).unwrap();
    // A pass-through operator first (the trap plugin passes every record
    // without `boom` as it is; the events have none).
    let chained = text_file
        .replace(
            "[[operators]]\nname = \"op\"",
            &format!(
                "[[operators]]\nname = \"pass\"\nplugin = \"{}\"\n[[operators]]\nname = \"op\"",
                artifacts::TRAP
            ),
        )
        .replace("gap_ms = 40", "gap_ms = 40, fault = \"trap\"");
    assert_ne!(chained, text_file);
    std::fs::write(fed.job.file(), chained).unwrap();
    let job = &fed.job;
    let child = job.spawn(None);
    job.wait_running();
    wait_read(job, fed.lines_fed());
    let o = swap(job, Path::new(artifacts::SWAP_FAULT), 4);
    assert!(o.status.success(), "swap request: {}", text(&o));
    fed.feed();
    let job = &fed.job;
    let r = outcome(job, 1);
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    let s = status(job);
    assert_eq!(s["operators"][1], digest(artifacts::STATE_MACHINE).as_str());
    fed.feed();
    wait_read(&fed.job, fed.lines_fed());
    let job = &fed.job;
    stop(job, child);
    assert_same_output(
        &job.output(),
        &fed.expected,
        "output of the chain after a rollback",
    );
    let all = manifest::list(&job.store(), &job.name).unwrap();
    let ops = &all.last().unwrap().manifest.partitions[0].operators;
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[1].plugin_digest, digest(artifacts::STATE_MACHINE));
}

/// Every file under `dir` with its size, hidden ones too.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return all;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            all.extend(files_under(&path));
        } else {
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            all.push((path, len));
        }
    }
    all.sort();
    all
}

/// A swap to a plugin whose state has another shape (the pass-through
/// plugin, unit state, also state version 1) is refused in pre-flight,
/// naming both shapes; a swap to one that declares it migrates from the
/// state machine's shape goes through and keeps every key's state.
#[test]
fn a_swap_to_another_state_shape_is_refused_unless_it_declares_the_migration() {
    let mut fed = Fed::new("swap-shape", 200_000, 2, "", 3);
    let job = &fed.job;
    let child = job.spawn(None);
    job.wait_running();
    wait_read(job, fed.lines_fed());
    let before = status(job);
    let o = swap(job, Path::new(artifacts::ECHO), 4);
    assert!(!o.status.success(), "refused: {}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("shape `weir.state-machine` (version 1)")
            && said.contains("shape `()` (version 1)")
            && said.contains("does not declare a migration")
            && said.contains("Nothing was changed"),
        "{said}"
    );
    let after = status(job);
    assert_eq!(
        after["checkpoints_completed"], before["checkpoints_completed"],
        "no barrier: the job never paused"
    );
    assert_eq!(after["swaps"], serde_json::json!([]), "{after}");

    let o = swap(job, Path::new(artifacts::SHAPE_MIGRATE), 4);
    assert!(o.status.success(), "swap: {}", text(&o));
    fed.feed();
    let job = &fed.job;
    let r = outcome(job, 1);
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(
        status(job)["operators"][0],
        digest(artifacts::SHAPE_MIGRATE).as_str()
    );
    fed.feed();
    wait_read(&fed.job, fed.lines_fed());
    let job = &fed.job;
    stop(job, child);
    assert_same_output(
        &job.output(),
        &fed.expected,
        "output across a swap to another shape that migrates from the state machine's",
    );
}

/// A run `--from-savepoint` with a plugin whose state has another shape is
/// refused before any output or state is touched, naming both shapes; with
/// a plugin that declares the migration it restores, and the output equals
/// an uninterrupted run.
#[test]
fn a_restore_into_another_state_shape_is_refused_unless_it_declares_the_migration() {
    let job = Job::new("restore-shape", 400_000, artifacts::STATE_MACHINE, 2, "");
    let expected = job.reference();
    savepoint_then_kill(&job);
    let file = job.file();
    let file = file.to_str().unwrap();
    let out_before = files_under(&job.root.join("out"));
    let saved_before = manifest::list(&job.store(), &job.name).unwrap().len();

    job.write(artifacts::ECHO, 2, "");
    let o = job
        .weir()
        .args(["run", file, "--from-savepoint", "mid"])
        .output()
        .unwrap();
    let said = text(&o);
    assert!(!o.status.success(), "refused: {said}");
    assert!(
        said.contains("shape `weir.state-machine` (version 1)")
            && said.contains("shape `()` (version 1)")
            && said.contains("does not declare a migration"),
        "{said}"
    );
    assert_eq!(
        files_under(&job.root.join("out")),
        out_before,
        "the output folder is as it was"
    );
    assert_eq!(
        manifest::list(&job.store(), &job.name).unwrap().len(),
        saved_before,
        "no checkpoint was written"
    );

    job.write(artifacts::SHAPE_MIGRATE, 2, "");
    let said = job.run_ok(&["run", file, "--from-savepoint", "mid"]);
    assert!(
        said.contains("restoring state into another plugin version"),
        "{said}"
    );
    assert_same_output(&job.output(), &expected, "output after the migration");
}

/// A swap naming something that is not a component file is refused at
/// once, in one line that says what is wrong, and the job runs on: a
/// device that never ends (`/dev/zero`), a FIFO nobody writes, a folder, a
/// file over the size limit, a text file, a core module.
#[test]
fn a_swap_to_what_is_not_a_component_file_is_refused_at_once_in_one_line() {
    let fed = Fed::new("swap-files", 20_000, 1, "", 1);
    let job = &fed.job;
    let child = job.spawn(None);
    job.wait_running();
    let fifo = job.root.join("plugin.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let big = job.root.join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let notes = job.root.join("notes.wasm");
    std::fs::write(&notes, "not a plugin\nat all\n").unwrap();
    let core = job.root.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let cases: [(&Path, &str); 6] = [
        (Path::new("/dev/zero"), "is a device, not a regular file"),
        (&fifo, "is a FIFO, not a regular file"),
        (&job.root, "is a folder, not a regular file"),
        (&big, "over the 256 MiB a plugin component may have"),
        (&notes, "is not a WebAssembly component"),
        (&core, "a core WebAssembly module, not a component"),
    ];
    for (plugin, expected) in cases {
        let started = Instant::now();
        let mut c = swap_command(job, plugin, 4);
        let mut running = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        while running.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                running.kill().unwrap();
                panic!("the swap to {} still has no answer", plugin.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = running.wait_with_output().unwrap();
        assert!(!o.status.success(), "{}", plugin.display());
        let said = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert!(said.contains(expected), "{}: {said}", plugin.display());
        assert_eq!(said.lines().count(), 1, "one line: {said}");
    }
    assert_eq!(status(job)["swaps"], serde_json::json!([]));
    stop(job, child);
}

/// A swap racing `weir stop --savepoint` either goes through before the
/// stop or is refused with the reason (the job is stopping), never with
/// an empty one and never by a connection closed under it.
#[test]
fn a_swap_racing_a_stop_with_a_savepoint_says_the_job_is_stopping() {
    let fed = Fed::new("swap-stop-race", 200_000, 2, "", 1);
    let job = &fed.job;
    let mut child = job.spawn(None);
    job.wait_running();
    wait_read(job, fed.lines_fed());
    let new = variant(&job.root, "b");
    let stopping = job
        .weir()
        .args(["stop", job.file().to_str().unwrap(), "--savepoint"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let o = swap(job, &new, 4);
    let said = text(&o);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered within the drain of the control endpoint: {said}"
    );
    assert!(
        o.status.success() || said.contains("the job is stopping"),
        "{said}"
    );
    assert!(!said.contains("refused (0)"), "{said}");
    let stopped = stopping.wait_with_output().unwrap();
    assert!(stopped.status.success(), "{}", text(&stopped));
    assert!(child.wait().unwrap().success());
}
