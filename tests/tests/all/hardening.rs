//! Refusals and limits a careful user runs into: savepoints are never
//! replaced, `snapshot` and `restore` have their own deadline, a run whose
//! every record went to dead letters says so.

use std::path::Path;
use std::time::Duration;

use weir::checkpoint::store::StoreSpec;
use weir::config::{CheckpointPlan, EngineSettings};
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{artifacts, assert_same_output, file_source, state_machine_plan};

use crate::savepoints::{Job, job_with_savepoint};

/// Checkpoints into a `file://` store in `root/state`.
fn checkpoints_in(
    root: &Path,
    interval: Option<Duration>,
    retain: usize,
    savepoint_every_event_time_ms: Option<i64>,
) -> CheckpointPlan {
    CheckpointPlan {
        store: StoreSpec {
            url: format!("file://{}", root.join("state").display()),
            ..StoreSpec::default()
        },
        interval,
        retain,
        savepoint_every_event_time_ms,
        snapshot_chunk_bytes: Some(CheckpointPlan::DEFAULT_CHUNK_BYTES),
    }
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_savepoint_name_that_exists_is_refused_and_the_old_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    generate(
        &events,
        &GenerateConfig {
            events: 100_000,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let mut plan = state_machine_plan(
        &events,
        &dir.path().join("out"),
        2,
        artifacts::STATE_MACHINE,
    );
    file_source(&mut plan).follow = true;
    file_source(&mut plan).poll_interval = Duration::from_millis(10);
    plan.checkpoint = Some(checkpoints_in(dir.path(), None, 3, None));
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job = std::thread::spawn({
        let stop = stop.clone();
        move || {
            run(
                &plan,
                RunOptions {
                    stop,
                    triggers: Some(rx),
                    ..RunOptions::default()
                },
            )
        }
    });
    let savepoint = |name: &str| {
        let (reply, answer) = crossbeam_channel::bounded(1);
        tx.send(weir::runtime::Trigger::Savepoint {
            name: Some(name.into()),
            stop: false,
            reply: Some(reply),
        })
        .unwrap();
        answer.recv_timeout(Duration::from_secs(60)).unwrap()
    };
    savepoint("mine").expect("the first savepoint of that name");
    let folder = dir
        .path()
        .join("state/jobs/state-machine-demo/savepoints/mine");
    let before = files_under(&folder);
    assert!(before.iter().any(|(p, _)| p.ends_with("manifest.json")));
    let err = savepoint("mine").expect_err("a second one of that name is refused");
    assert!(
        err.contains("exists already") && err.contains("never replaced"),
        "{err}"
    );
    assert_eq!(
        files_under(&folder),
        before,
        "the first one is byte-identical"
    );
    savepoint("mine-2").expect("another name works");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    job.join().unwrap().unwrap();
}

/// A job whose state-machine plugin holds several hundred thousand keys, so
/// one `snapshot` takes far longer than one batch.
fn many_keys_plan(root: &Path, engine: EngineSettings) -> weir::config::Plan {
    let events = root.join("events");
    if !events.exists() {
        generate(
            &events,
            &GenerateConfig {
                events: 1_500_000,
                max_address: 1_000_000,
                max_machines: 1_000_000,
                ..GenerateConfig::default()
            },
        )
        .unwrap();
    }
    let mut plan = state_machine_plan(&events, &root.join("out"), 1, artifacts::STATE_MACHINE);
    plan.engine = engine;
    plan.checkpoint = Some(checkpoints_in(
        root,
        Some(Duration::from_millis(100)),
        2,
        None,
    ));
    plan
}

#[test]
fn snapshot_and_restore_have_their_own_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Batches get a generous deadline; the state deadline alone decides
    // for a blocking `snapshot`: held to 10 ms, the snapshot of a large
    // state is stopped (it takes longer than that) although batches may
    // take 1 s.
    let tight = EngineSettings {
        call_timeout: Duration::from_secs(1),
        state_call_timeout: Duration::from_millis(10),
        ..EngineSettings::default()
    };
    let mut blocking = many_keys_plan(dir.path(), tight.clone());
    if let Some(c) = blocking.checkpoint.as_mut() {
        c.snapshot_chunk_bytes = None;
    }
    let err = run(&blocking, RunOptions::default())
        .expect_err("a 10 ms state deadline stops the snapshot");
    let text = err.to_string();
    assert!(
        text.contains("snapshot") && text.contains("deadline of 10 ms"),
        "{text}"
    );
    // Chunked snapshots (the default) never serialize the whole state in
    // one call: the same 10 ms state deadline passes.
    let report = run(&many_keys_plan(dir.path(), tight), RunOptions::default()).unwrap();
    assert!(report.checkpoints.completed > 0, "checkpoints completed");
    // With its own (default) deadline, blocking snapshots pass too.
    let default_state = EngineSettings {
        call_timeout: Duration::from_secs(1),
        ..EngineSettings::default()
    };
    let mut blocking = many_keys_plan(dir.path(), default_state);
    if let Some(c) = blocking.checkpoint.as_mut() {
        c.snapshot_chunk_bytes = None;
    }
    let report = run(&blocking, RunOptions::default()).unwrap();
    assert!(report.checkpoints.completed > 0, "checkpoints completed");
}

#[test]
fn a_run_where_every_record_went_to_dead_letters_says_so() {
    let job = Job::new("all-dead", 1_000, artifacts::STATE_MACHINE, 1, "");
    // CSV events read as JSON lines: not one parses.
    let text = std::fs::read_to_string(job.file())
        .unwrap()
        .replace("format = \"csv\"", "format = \"jsonl\"")
        .replace("key_column = 0", "key_field = \"address\"")
        .replace("timestamp_column = 2", "");
    std::fs::write(job.file(), text).unwrap();
    let said = job.run_ok(&["run", job.file().to_str().unwrap()]);
    assert!(
        said.contains(
            "WARNING: every record of this run went to the dead-letter output (1000 records)"
        ),
        "{said}"
    );
    // Records that parse but that the operator refuses, every one.
    let events = job.root.join("events");
    for e in std::fs::read_dir(&events).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let lines: String = (0..500).map(|i| format!("{i},z,{i}\n")).collect();
    std::fs::write(events.join("bad-events.csv"), lines).unwrap();
    let text = std::fs::read_to_string(job.file())
        .unwrap()
        .replace("format = \"jsonl\"", "format = \"csv\"")
        .replace("key_field = \"address\"", "key_column = 0");
    std::fs::write(job.file(), text).unwrap();
    let said = job.run_ok(&["run", job.file().to_str().unwrap()]);
    assert!(
        said.contains(
            "WARNING: every record of this run went to the dead-letter output (500 records)"
        ),
        "{said}"
    );
}

#[test]
fn a_restore_whose_input_file_changed_or_shrank_is_refused_and_touches_nothing() {
    // Event-time savepoints fall mid-input, at the same places every run.
    let (job, _) = job_with_savepoint("changed-input");
    let file = job.file();
    let file = file.to_str().unwrap();
    let all = weir::checkpoint::manifest::list(&job.store(), &job.name).unwrap();
    let sp = &all[0].manifest;
    let at = &sp.source.position;
    let input = job.root.join("events").join(at["file"].as_str().unwrap());
    let offset = at["offset"].as_u64().unwrap() as usize;
    assert!(offset > 100, "{at}");
    let original = std::fs::read(&input).unwrap();
    let restore = |what: &str| {
        let before = (
            files_under(&job.root.join("out")),
            files_under(&job.root.join("weir-state")),
        );
        let out = job
            .weir()
            .args(["run", file, "--from-savepoint", &sp.name])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{what}: the restore was accepted");
        let after = (
            files_under(&job.root.join("out")),
            files_under(&job.root.join("weir-state")),
        );
        assert!(
            before == after,
            "{what}: output or state changed by a refused run"
        );
        err
    };

    // A byte before the position changed (a digit of an address).
    let mut changed = original.clone();
    let i = (0..offset)
        .rev()
        .find(|&i| changed[i].is_ascii_digit())
        .unwrap();
    changed[i] = if changed[i] == b'9' {
        b'1'
    } else {
        changed[i] + 1
    };
    std::fs::write(&input, &changed).unwrap();
    let err = restore("a changed file");
    assert!(err.contains("changed since the savepoint"), "{err}");

    // The file was cut before the position.
    std::fs::write(&input, &original[..offset - 1]).unwrap();
    let err = restore("a truncated file");
    assert!(err.contains("fewer than the restored position"), "{err}");

    // Put back as it was, the savepoint restores.
    std::fs::write(&input, &original).unwrap();
    job.run_ok(&["run", file, "--from-savepoint", &sp.name]);
}

#[test]
fn a_file_that_arrives_with_an_earlier_name_is_read_also_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let write = |name: &str, prefix: &str, n: usize| {
        let text: String = (0..n)
            .map(|i| format!("{prefix}{i},x,{}\n", 1000 + i))
            .collect();
        std::fs::write(events.join(name), text).unwrap();
        (0..n)
            .map(|i| format!("{prefix}{i}={prefix}{i},x,{}", 1000 + i))
            .collect::<Vec<_>>()
    };
    let out = dir.path().join("out");
    let mut plan = state_machine_plan(&events, &out, 1, artifacts::ECHO);
    file_source(&mut plan).follow = true;
    file_source(&mut plan).poll_interval = Duration::from_millis(10);
    plan.checkpoint = Some(checkpoints_in(dir.path(), None, 3, None));
    // Run until the folder is read, then stop with a savepoint.
    let run_then_stop = |from: Option<&str>, name: &str| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let plan = plan.clone();
        let from = from.map(str::to_string);
        let job = std::thread::spawn(move || {
            run(
                &plan,
                RunOptions {
                    triggers: Some(rx),
                    from_savepoint: from,
                    ..RunOptions::default()
                },
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let (reply, answer) = crossbeam_channel::bounded(1);
        tx.send(weir::runtime::Trigger::Savepoint {
            name: Some(name.into()),
            stop: true,
            reply: Some(reply),
        })
        .unwrap();
        answer
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
            .unwrap();
        job.join().unwrap().unwrap();
    };
    let mut expected = write("m.csv", "m", 100);
    expected.sort();
    run_then_stop(None, "first");
    assert_same_output(&weir_tests::read_output(&out), &expected, "first run");
    // A late file whose name sorts before the one read last.
    expected.extend(write("a.csv", "a", 50));
    expected.sort();
    run_then_stop(Some("first"), "second");
    assert_same_output(
        &weir_tests::read_output(&out),
        &expected,
        "after the restore",
    );
}

#[test]
fn a_savepoint_request_to_a_job_without_checkpoints_is_answered_at_once() {
    let job = Job::following("no-checkpoints", "[checkpoints]\nenabled = false\n");
    let file = job.file();
    let file = file.to_str().unwrap();
    let mut child = job.spawn(None);
    job.wait_running();
    let started = std::time::Instant::now();
    let out = job
        .weir()
        .args(["savepoint", "trigger", file])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("without checkpoints"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered at once"
    );
    job.run_ok(&["stop", file]);
    let status = child.wait().unwrap();
    assert!(status.success(), "stopped cleanly: {status}");
}

#[test]
fn a_second_run_of_a_running_job_is_refused_and_changes_nothing() {
    let job = Job::new("twice", 200_000, artifacts::STATE_MACHINE, 2, "");
    job.set_follow(true);
    let file = job.file();
    let file = file.to_str().unwrap();
    let mut first = job.spawn(None);
    job.wait_running();
    let snapshot = || {
        (
            files_under(&job.root.join("out")),
            files_under(&job.root.join("weir-state")),
            files_under(&job.root.join("run")),
        )
    };
    // Let the first run settle (it reads everything, then waits for files).
    std::thread::sleep(Duration::from_millis(500));
    let before = snapshot();
    let second = job.weir().args(["run", file]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    let after = snapshot();
    assert!(
        before == after,
        "output, state and run files untouched by the refused run"
    );
    // Savepoint names that would not name a folder of their own are refused.
    for bad in ["..", ".", "a/b", "x%2Fy"] {
        let out = job
            .weir()
            .args(["savepoint", "trigger", file, "--name", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: accepted");
        assert!(err.contains("savepoint name may hold"), "{bad}: {err}");
    }
    // The first run can still be stopped, with a savepoint.
    job.run_ok(&["stop", file, "--savepoint", "--name", "end"]);
    assert!(first.wait().unwrap().success());
    // Its lease is gone: the job runs again (to the end of its input).
    job.set_follow(false);
    job.run_ok(&["run", file, "--from-savepoint", "end"]);
}

#[test]
fn refused_runs_leave_committed_output_and_savepoints_byte_identical() {
    // Event-time savepoints fall mid-input, at the same places every run.
    let (job, _) = job_with_savepoint("refusals");
    let file = job.file();
    let file = file.to_str().unwrap();
    let all = weir::checkpoint::manifest::list(&job.store(), &job.name).unwrap();
    let savepoint = all[0].manifest.name.clone();
    let input = all[0].manifest.source.position["file"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(job.file()).unwrap();
    let snapshot = || {
        (
            files_under(&job.root.join("out")),
            files_under(&job.root.join("weir-state")),
        )
    };
    let before = snapshot();
    assert!(!before.0.is_empty() && !before.1.is_empty());
    let refused = |what: &str, args: &[&str], says: &str| {
        let out = job.weir().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the run was accepted");
        assert!(err.contains(says), "{what}: {err}");
        assert!(snapshot() == before, "{what}: output or savepoints changed");
    };

    // A typo in the source path.
    std::fs::write(
        job.file(),
        text.replace("path = \"events\"", "path = \"evnets\""),
    )
    .unwrap();
    refused(
        "a source path with a typo",
        &["run", file],
        "does not exist",
    );
    std::fs::write(job.file(), &text).unwrap();

    // A restore whose input file was moved away.
    let events = job.root.join("events");
    std::fs::rename(events.join(&input), job.root.join("moved.csv")).unwrap();
    refused(
        "a restore whose input file moved",
        &["run", file, "--from-savepoint", &savepoint],
        "not in the source folder",
    );
    std::fs::rename(job.root.join("moved.csv"), events.join(&input)).unwrap();

    // A parallelism so large that its instances cannot be created.
    std::fs::write(
        job.file(),
        text.replace("parallelism = 2", "parallelism = 100000"),
    )
    .unwrap();
    refused(
        "a parallelism too large",
        // Started over (a plain run would resume from a savepoint, and be
        // refused for its partitions before any plugin is instantiated).
        &["run", file, "--fresh"],
        "would not fit in this process's address space",
    );
    std::fs::write(job.file(), &text).unwrap();

    // A control endpoint port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        job.file(),
        format!("{text}\n[control]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    refused(
        "a control port in use",
        &["run", file, "--from-savepoint", &savepoint],
        "binding control endpoint",
    );
    std::fs::write(job.file(), &text).unwrap();

    // A corrupt savepoint among good ones: named, it is refused; `latest`
    // and the listing skip it.
    let manifest = job
        .root
        .join("weir-state")
        .join(&all[0].folder)
        .join("manifest.json");
    let good = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    let before_corrupt = snapshot();
    let out = job
        .weir()
        .args(["run", file, "--from-savepoint", &savepoint])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("corrupt"), "{err}");
    assert!(snapshot() == before_corrupt, "a refused corrupt restore");
    let listed = weir::checkpoint::manifest::list(&job.store(), &job.name).unwrap();
    assert_eq!(listed.len(), all.len() - 1, "the corrupt one is skipped");
    std::fs::write(&manifest, &good).unwrap();
}

/// An echo job over `events` with a file sink in `out` and event-time
/// savepoints every `every_ms`, run to the end in process.
fn echo_plan(root: &Path, every_ms: Option<i64>) -> weir::config::Plan {
    let mut plan = state_machine_plan(&root.join("events"), &root.join("out"), 1, artifacts::ECHO);
    plan.checkpoint = Some(checkpoints_in(root, None, 3, every_ms));
    plan
}

#[test]
fn symlinked_input_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let elsewhere = dir.path().join("elsewhere.csv");
    std::fs::write(&elsewhere, "k1,x,1\nk2,x,2\n").unwrap();
    std::fs::write(events.join("a.csv"), "k0,x,0\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, events.join("b.csv")).unwrap();
    run(&echo_plan(dir.path(), None), RunOptions::default()).unwrap();
    let out = weir_tests::read_output(&dir.path().join("out"));
    assert_eq!(out, ["k0=k0,x,0", "k1=k1,x,1", "k2=k2,x,2"]);
    // A link that points nowhere is an error, not a silent skip.
    std::fs::remove_file(&elsewhere).unwrap();
    let err = run(&echo_plan(dir.path(), None), RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn extreme_event_times_do_not_take_a_savepoint_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let text: String = (0..200)
        .map(|i| format!("k{i},x,{}\n", i64::MAX - 200 + i))
        .collect();
    std::fs::write(events.join("a.csv"), text).unwrap();
    run(&echo_plan(dir.path(), Some(1000)), RunOptions::default()).unwrap();
    let store = StoreSpec {
        url: format!("file://{}", dir.path().join("state").display()),
        ..StoreSpec::default()
    };
    let store = weir::checkpoint::store::StateStore::open(&store, dir.path()).unwrap();
    let savepoints = weir::checkpoint::manifest::list(&store, "state-machine-demo").unwrap();
    assert!(savepoints.len() <= 2, "{} savepoints", savepoints.len());
    assert_eq!(weir_tests::read_output(&dir.path().join("out")).len(), 200);
}

#[test]
fn a_corrupt_savepoint_is_listed_as_corrupt_and_can_be_deleted() {
    // Event-time savepoints fall mid-input, at the same places every run.
    let (job, _) = job_with_savepoint("corrupt-listed");
    let file = job.file();
    let file = file.to_str().unwrap();
    let all = weir::checkpoint::manifest::list(&job.store(), &job.name).unwrap();
    let bad = &all[0];
    let folder = job.root.join("weir-state").join(&bad.folder);
    std::fs::write(folder.join("manifest.json"), b"{\"format\": 2, \"job\"").unwrap();
    let listed = job.run_ok(&["savepoint", "list", file]);
    assert!(
        listed.contains("CORRUPT") && listed.contains(&bad.manifest.name),
        "{listed}"
    );
    for good in &all[1..] {
        assert!(listed.contains(&good.manifest.name), "{listed}");
    }
    // `latest` skips it: a restore from it runs.
    job.run_ok(&["run", file, "--from-savepoint", "latest"]);
    job.run_ok(&["savepoint", "delete", file, &bad.manifest.name]);
    assert!(!folder.exists(), "no folder left behind");
    let listed = job.run_ok(&["savepoint", "list", file]);
    assert!(!listed.contains("CORRUPT"), "{listed}");
}

#[test]
fn pruned_checkpoints_leave_no_folders() {
    let job = Job::new(
        "pruned",
        2_000_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 10\nretain = 2\n",
    );
    let said = job.run_ok(&["run", job.file().to_str().unwrap()]);
    let taken: u64 = said
        .split(" checkpoints")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(taken > 2, "checkpoints were pruned ({taken} taken): {said}");
    let dir = job
        .root
        .join("weir-state/jobs")
        .join(&job.name)
        .join("checkpoints");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "only the retained folders: {left:?}");
}

/// About 700k live keys in the JavaScript plugin: its snapshots run under
/// the state-call deadline, not the batch one, so checkpoints complete.
/// Slow (the JS map at this size handles some 15k records/s): run by
/// `scripts/soak.sh`, not the test suite.
#[test]
#[ignore]
fn a_javascript_plugin_with_700k_keys_takes_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    generate(
        &events,
        &GenerateConfig {
            events: 1_500_000,
            max_machines: 700_000,
            max_address: 700_000,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let mut plan = state_machine_plan(
        &events,
        &dir.path().join("out"),
        1,
        artifacts::STATE_MACHINE_JS,
    );
    plan.checkpoint = Some(checkpoints_in(
        dir.path(),
        Some(Duration::from_secs(5)),
        2,
        None,
    ));
    let report = run(&plan, RunOptions::default()).unwrap();
    assert!(
        report.checkpoints.completed >= 2,
        "{:?}",
        report.checkpoints
    );
    assert_same_output(
        &weir_tests::read_output(&dir.path().join("out")),
        &weir_tests::reference_alerts(&events),
        "alerts of a DFA",
    );
}

#[test]
fn a_second_run_of_a_job_without_checkpoints_is_refused_and_the_first_stays_reachable() {
    let job = Job::following("twice-no-checkpoints", "[checkpoints]\nenabled = false\n");
    let file = job.file();
    let file = file.to_str().unwrap();
    let mut first = job.spawn(None);
    job.wait_running();
    let run_files = files_under(&job.root.join("run"));
    let second = job.weir().args(["run", file]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert_eq!(
        files_under(&job.root.join("run")),
        run_files,
        "address file kept"
    );
    job.run_ok(&["stop", file]);
    assert!(first.wait().unwrap().success());
}
