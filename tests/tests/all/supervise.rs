//! Running under a supervisor, with the real `weir` binary: SIGTERM drains
//! to a final checkpoint like Ctrl-C; a second signal stops at once, even
//! during a plugin call that never returns; a plain `weir run` after any
//! stop resumes from the newest complete checkpoint (or from the start when
//! the previous run stopped before its first), and `--fresh` says what it
//! replaces; `weir savepoint delete` deletes one savepoint or nothing.

use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir_tests::{artifacts, assert_same_output};

use crate::savepoints::Job;

/// Send signals to `child` (`kill -SIG PID`, each in turn, from one shell
/// so they arrive back to back).
fn signal(child: &Child, signals: &[&str]) {
    let pid = child.id();
    let script: Vec<String> = signals.iter().map(|s| format!("kill -{s} {pid}")).collect();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(script.join("; "))
        .status()
        .unwrap();
    assert!(ok.success(), "signals sent");
}

/// Wait at most `limit` for `child` to exit; kill it (and fail) otherwise.
fn exits_within(mut child: Child, limit: Duration) -> (ExitStatus, String, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let took = start.elapsed();
            let Output { status, stderr, .. } = child.wait_with_output().unwrap();
            return (status, String::from_utf8_lossy(&stderr).into_owned(), took);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "weir still ran {limit:?} after the signal: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `weir run JOB` plus `args`, to its end, with info logs: status and stderr.
fn run_logged(job: &Job, args: &[&str]) -> (ExitStatus, String) {
    let out = job
        .weir()
        .env("WEIR_LOG", "info")
        .arg("run")
        .arg(job.file())
        .args(args)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `N records in` of a run's summary line.
fn records_in(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(" records in,"))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let before = line.split(" records in,").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A 3M-event state-machine job with checkpoints every 50 ms.
fn checkpointed(name: &str) -> Job {
    Job::new(
        name,
        3_000_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 50\n",
    )
}

#[test]
fn sigterm_drains_and_a_plain_restart_resumes_to_the_same_output() {
    let job = checkpointed("sup-sigterm");
    let expected = job.reference();
    // Following its folder, the run is still there when the signal comes
    // (the whole input takes well under a second).
    job.set_follow(true);
    let child = job.spawn(None);
    job.wait_running();
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, &["TERM"]);
    let (status, said, _) = exits_within(child, Duration::from_secs(60));
    assert!(
        status.success(),
        "a drained stop exits 0: {status:?} {said}"
    );
    assert!(said.contains("stopping: draining"), "{said}");
    assert!(said.contains("` stopped:"), "{said}");
    assert!(
        !manifest::list(&job.store(), &job.name).unwrap().is_empty(),
        "the drained run left a checkpoint"
    );

    job.set_follow(false);
    let (status, said) = run_logged(&job, &[]);
    assert!(status.success(), "{said}");
    assert!(said.contains("resuming job `sup-sigterm` from"), "{said}");
    assert!(said.contains("restored from"), "{said}");
    assert!(
        records_in(&said) < job.events,
        "the restart read only the rest of the input: {said}"
    );
    assert_same_output(&job.output(), &expected, "output after SIGTERM and restart");
}

#[test]
fn a_second_signal_stops_at_once_and_a_plain_restart_resumes() {
    let job = checkpointed("sup-twice");
    let expected = job.reference();
    // Following its folder, the run is still there when the signal comes
    // (the whole input takes well under a second).
    job.set_follow(true);
    let child = job.spawn(None);
    job.wait_running();
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, &["TERM", "INT"]);
    let (status, said, _) = exits_within(child, Duration::from_secs(10));
    assert!(
        matches!(status.code(), Some(130 | 143)),
        "a second signal exits with 128 + its number: {status:?} {said}"
    );
    assert!(said.contains("stopping at once"), "{said}");

    job.set_follow(false);
    let (status, said) = run_logged(&job, &[]);
    assert!(status.success(), "{said}");
    assert_same_output(
        &job.output(),
        &expected,
        "output after a hard stop and restart",
    );
}

#[test]
fn a_second_signal_stops_at_once_during_a_plugin_call() {
    // A plugin that loops forever on the `spin` record, with a deadline far
    // beyond the test: only the second signal can end the process.
    let job = Job::new(
        "sup-spin",
        10_000,
        artifacts::LOOP,
        1,
        "[engine]\ncall_timeout_ms = 600000\n[checkpoints]\ninterval_ms = 20\n",
    );
    std::fs::write(
        job.root.join("events").join("zz-spin.csv"),
        "k1,spin,1700000000000\n",
    )
    .unwrap();
    let child = job.spawn(None);
    job.wait_running();
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, &["TERM"]);
    std::thread::sleep(Duration::from_millis(1000));
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal drains: the plugin call still runs"
    );
    signal(&child, &["INT"]);
    let (status, said, took) = exits_within(child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("stopping at once"), "{said}");
    assert!(took < Duration::from_secs(2), "stopped at once: {took:?}");
}

#[test]
fn a_plain_run_after_crashes_anywhere_resumes_to_the_same_output() {
    let job = Job::new(
        "sup-crash",
        2_000_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 25\nretain = 2\n",
    );
    let expected = job.reference();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut early, mut resumed) = (0, 0);
    for run in 0..10 {
        let had_checkpoint = !manifest::list(&job.store(), &job.name).unwrap().is_empty();
        let mut child = job.spawn(None);
        weir_tests::stages::xorshift(&mut rng);
        if run < 2 {
            // Before the first checkpoint: once running (the lease taken),
            // killed at once.
            job.wait_running();
        } else {
            std::thread::sleep(Duration::from_millis(20 + rng % 400));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let has_checkpoint = !manifest::list(&job.store(), &job.name).unwrap().is_empty();
        early += usize::from(!has_checkpoint);
        resumed += usize::from(had_checkpoint);
    }
    assert!(early > 0, "some run was killed before the first checkpoint");
    assert!(resumed > 0, "some runs resumed from a checkpoint");
    let (status, said) = run_logged(&job, &[]);
    assert!(status.success(), "{said}");
    assert_same_output(&job.output(), &expected, "output after 10 crashes");
}

#[test]
fn latest_after_a_crash_before_the_first_checkpoint_starts_from_the_start() {
    // No periodic checkpoint for an hour: the run is killed before its first.
    let job = Job::new(
        "sup-early",
        200_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 3600000\n",
    );
    let expected = job.reference();
    job.set_follow(true);
    let mut child = job.spawn(None);
    job.wait_running();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(manifest::list(&job.store(), &job.name).unwrap().is_empty());
    job.set_follow(false);
    let (status, said) = run_logged(&job, &["--from-savepoint", "latest"]);
    assert!(status.success(), "{said}");
    assert!(
        said.contains("stopped before the first one, so nothing was committed"),
        "{said}"
    );
    assert_same_output(&job.output(), &expected, "output after an early crash");

    // A store without any trace of the job: `latest` is still refused, and
    // nothing is written.
    let other = Job::new(
        "sup-nothing",
        1_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 3600000\n",
    );
    let (status, said) = run_logged(&other, &["--from-savepoint", "latest"]);
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("no complete checkpoint or savepoint"),
        "{said}"
    );
    assert!(!other.root.join("out").exists(), "no output written");
}

#[test]
fn fresh_starts_over_and_says_what_it_replaces() {
    let job = Job::new(
        "sup-fresh",
        100_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 20\n",
    );
    let expected = job.reference();
    let (status, said) = run_logged(&job, &[]);
    assert!(status.success(), "{said}");
    assert_eq!(records_in(&said), job.events, "{said}");
    // Run again: it resumes at the end of its input and reads nothing.
    let (status, said) = run_logged(&job, &[]);
    assert!(status.success(), "{said}");
    assert!(said.contains("resuming job `sup-fresh`"), "{said}");
    assert_eq!(records_in(&said), 0, "{said}");
    assert_same_output(&job.output(), &expected, "output after a second run");
    // `--fresh`: everything again, said out loud.
    let (status, said) = run_logged(&job, &["--fresh"]);
    assert!(status.success(), "{said}");
    assert!(said.contains("starts over"), "{said}");
    assert!(
        said.contains("the sink's earlier output is replaced"),
        "{said}"
    );
    assert_eq!(records_in(&said), job.events, "{said}");
    assert_same_output(&job.output(), &expected, "output after --fresh");
    let (status, said) = run_logged(&job, &["--fresh", "--from-savepoint", "latest"]);
    assert!(
        !status.success(),
        "--fresh and --from-savepoint conflict: {said}"
    );
}

#[test]
fn savepoint_delete_takes_one_name_or_deletes_nothing() {
    let job = Job::following("sup-delete", "");
    let child = job.spawn(None);
    job.wait_running();
    let file = job.file();
    let file = file.to_str().unwrap();
    for name in ["a", "b"] {
        job.run_ok(&["savepoint", "trigger", file, "--name", name]);
    }
    job.run_ok(&["stop", file]);
    let (status, said, _) = exits_within(child, Duration::from_secs(60));
    assert!(status.success(), "{said}");
    let savepoints = || {
        let mut names: Vec<String> = manifest::list(&job.store(), &job.name)
            .unwrap()
            .into_iter()
            .filter(|f| f.manifest.kind == manifest::Kind::Savepoint)
            .map(|f| f.manifest.name)
            .collect();
        names.sort();
        names
    };
    assert_eq!(savepoints(), ["a", "b"]);
    for bad in ["", "/", "..", "a/..", " "] {
        let out = job
            .weir()
            .args(["savepoint", "delete", file, bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "`{bad}` refused");
        assert!(err.contains("is not a savepoint name"), "{err}");
        assert!(err.contains("nothing deleted"), "{err}");
        assert_eq!(savepoints(), ["a", "b"], "nothing deleted by `{bad}`");
    }
    job.run_ok(&["savepoint", "delete", file, "a"]);
    assert_eq!(savepoints(), ["b"]);
}

#[test]
fn a_run_whose_final_checkpoint_fails_exits_non_zero_and_commits_nothing_uncovered() {
    let job = Job::new(
        "sup-store-fails",
        100_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 20\n",
    );
    let expected = job.reference();
    // A file where the job's checkpoint folders go: the store refuses every
    // checkpoint, the final one too (as a full or read-only disk would).
    let blocker = job.root.join("weir-state/jobs/sup-store-fails/checkpoints");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a folder").unwrap();
    let (status, said) = run_logged(&job, &[]);
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("its final checkpoint failed"), "{said}");
    assert!(!said.contains("` done:"), "{said}");
    assert!(
        job.output().is_empty(),
        "nothing committed that no checkpoint covers: {} lines",
        job.output().len()
    );

    std::fs::remove_file(&blocker).unwrap();
    let (status, said) = run_logged(&job, &[]);
    assert!(status.success(), "{said}");
    assert_same_output(&job.output(), &expected, "output once the store works");
}

/// Two runs of one job started at the same moment, six times, without
/// checkpoints and with a `memory://` state store (neither has a lease
/// another process sees): each time exactly one runs and the other is
/// refused with "already running", before it touches anything.
#[test]
fn two_runs_started_together_never_both_run() {
    for (name, extra) in [
        ("pair-none", "[checkpoints]\nenabled = false\n"),
        (
            "pair-memory",
            "[state]\nurl = \"memory://\"\n[checkpoints]\ninterval_ms = 100\n",
        ),
    ] {
        let job = Job::following(name, extra);
        let file = job.file();
        let file = file.to_str().unwrap();
        for round in 0..6 {
            let pair = [job.spawn(None), job.spawn(None)];
            // The refused one exits; the other runs until stopped.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut pair = pair.map(Some);
            let refused = loop {
                assert!(
                    Instant::now() < deadline,
                    "{name} round {round}: neither was refused"
                );
                if let Some(i) = (0..2).find(|&i| {
                    pair[i]
                        .as_mut()
                        .is_some_and(|c| c.try_wait().unwrap().is_some())
                }) {
                    break i;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let out = pair[refused].take().unwrap().wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name} round {round}: {err}");
            assert!(
                err.contains("already running"),
                "{name} round {round}: {err}"
            );
            let mut running = pair[1 - refused].take().unwrap();
            assert!(
                running.try_wait().unwrap().is_none(),
                "{name} round {round}: the other one runs"
            );
            job.wait_running();
            job.run_ok(&["stop", file]);
            let (status, err, _) = exits_within(running, Duration::from_secs(60));
            assert!(status.success(), "{name} round {round}: {err}");
        }
    }
}

/// Every checkpoint failing (the final one too, by the failpoint): the job
/// exits non-zero and the file sink commits nothing no checkpoint covers;
/// once checkpoints work, a plain run gives the whole output.
#[test]
fn a_run_whose_checkpoints_all_fail_exits_non_zero_and_commits_nothing() {
    for (name, interval) in [("sup-fail-every", 20), ("sup-fail-every-1s", 1000)] {
        let job = Job::new(
            name,
            50_000,
            artifacts::STATE_MACHINE,
            2,
            &format!("[checkpoints]\ninterval_ms = {interval}\n"),
        );
        let expected = job.reference();
        let out = job
            .weir()
            .env("WEIR_FAILPOINT", "checkpoint-fails-every:1")
            .arg("run")
            .arg(job.file())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {said}");
        assert!(said.contains("final checkpoint failed"), "{name}: {said}");
        assert!(
            job.output().is_empty(),
            "{name}: nothing committed that no checkpoint covers: {} lines",
            job.output().len()
        );
        let (status, said) = run_logged(&job, &[]);
        assert!(status.success(), "{name}: {said}");
        assert_same_output(&job.output(), &expected, name);
    }
}
