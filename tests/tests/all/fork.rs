//! What-if forks through the library ([`weir::job::fork`]), without the
//! `weir` binary: a fork starts from a savepoint of the live job, writes its
//! own output (the live job's is left alone), and [`weir::diff`] of a fork
//! with the job's own plugin and one with a new plugin reports exactly the
//! records the new plugin changes. The same as the `weir fork` test in
//! `swaps.rs`, asserted through the library.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::config::{JobFile, Plan};
use weir::job::fork::{self, Fork};
use weir::job::{JobReport, RunOptions, run};
use weir_tests::{artifacts, assert_same_output, file_source, read_output};

use crate::savepoints::Job;
use crate::swaps::without;

/// The live job's plan, as its job file resolves, without a control
/// endpoint (the test drives it through the library).
fn live_plan(job: &Job) -> Plan {
    let mut plan = JobFile::load(&job.file())
        .unwrap()
        .resolve(&job.name, &job.root)
        .unwrap();
    plan.control = None;
    plan
}

/// Run `plan` following its folder until it has read `lines` records, then
/// stop it with savepoint `name`.
fn run_then_savepoint(plan: &Plan, lines: u64, name: &str) {
    let mut follow = plan.clone();
    file_source(&mut follow).follow = true;
    file_source(&mut follow).poll_interval = Duration::from_millis(10);
    let (tx, rx) = crossbeam_channel::unbounded();
    let read = Arc::new(AtomicU64::new(0));
    let handle = std::thread::spawn({
        let read = read.clone();
        move || {
            run(
                &follow,
                RunOptions {
                    triggers: Some(rx),
                    progress: Some(Box::new(move |p| {
                        read.store(p.now.records_read, Ordering::Relaxed)
                    })),
                    progress_every: Some(Duration::from_millis(5)),
                    ..RunOptions::default()
                },
            )
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while read.load(Ordering::Relaxed) < lines {
        assert!(
            Instant::now() < deadline,
            "the job did not read {lines} records"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    tx.send(weir::runtime::Trigger::Savepoint {
        name: Some(name.into()),
        stop: true,
        reply: Some(reply_tx),
    })
    .unwrap();
    reply_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let report = handle.join().unwrap().unwrap();
    assert_eq!(report.totals.records_read, lines);
}

/// A fork through the library from savepoint `mid` with a plugin that
/// formats the alerts of one state differently: the diff reports exactly
/// those alerts as changed; a fork with the job's own plugin is the job's
/// output after the savepoint, and diffs equal.
#[test]
fn a_fork_from_the_library_starts_at_the_savepoint_and_diffs_the_changed_alerts() {
    let job = Job::new("fork-lib", 300_000, artifacts::STATE_MACHINE, 2, "");
    let expected = job.reference();
    // The input in two halves: the second arrives after the savepoint.
    let events = job.root.join("events");
    let lines = weir_tests::csv_lines(&events);
    let (first, second) = lines.split_at(lines.len() / 2);
    std::fs::remove_dir_all(&events).unwrap();
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("events-000000.csv"), first.join("\n") + "\n").unwrap();
    let live = live_plan(&job);

    // The job reads the first half and stops with savepoint `mid`; its
    // committed output then is what it emitted before `mid`. From `mid` it
    // reads the rest.
    run_then_savepoint(&live, first.len() as u64, "mid");
    let before = job.output();
    std::fs::write(events.join("events-000001.csv"), second.join("\n") + "\n").unwrap();
    run(
        &live,
        RunOptions {
            from_savepoint: Some("mid".into()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let all = job.output();
    assert_same_output(&all, &expected, "the job's output");
    // What the job emitted after the savepoint.
    let after = without(&all, &before);
    assert!(!after.is_empty(), "the savepoint is not at the end");

    let fork = |plugin: &str, dir: &str, until: Option<i64>| -> (JobReport, PathBuf) {
        let spec = Fork {
            from_savepoint: "mid".into(),
            plugin: plugin.into(),
            operator: None,
            out: job.root.join(dir),
            until,
            parallelism: 1,
            overwrite: false,
        };
        let report = fork::run(&live, &spec, Arc::default()).unwrap();
        (report, spec.out)
    };
    let (report, same) = fork(artifacts::STATE_MACHINE, "fork-same", None);
    // It starts from the job's savepoint, and reads from there to the end.
    assert_eq!(report.name, fork::name("fork-lib", &same));
    assert!(report.name.starts_with("fork-lib-fork-"), "{}", report.name);
    let from = report.restored_from.as_deref().unwrap_or_default();
    assert!(from.ends_with("jobs/fork-lib/savepoints/mid"), "{from}");
    assert_eq!(report.totals.records_read, second.len() as u64);
    // It writes its own output; the job's is left alone.
    assert_same_output(
        &read_output(&same),
        &{
            let mut a = after.clone();
            a.sort();
            a
        },
        "a fork with the same plugin is the job's output after the savepoint",
    );
    assert_same_output(&job.output(), &all, "the job's output after the forks");

    let (_, new) = fork(artifacts::REFORMAT, "fork-new", None);
    let diff = |a: &PathBuf, b: &PathBuf| weir::diff::diff(a, b, Some("address"), 5).unwrap();
    let report = diff(&same, &new);
    let in_y = after
        .iter()
        .filter(|l| l.contains("\"state\":\"Y\""))
        .count() as u64;
    assert!(in_y > 0, "some alerts are in state Y");
    assert_eq!(report.changed, in_y, "{report}");
    assert_eq!(report.equal, after.len() as u64 - in_y, "{report}");
    assert_eq!((report.missing, report.extra), (0, 0));
    let example = &report.changed_examples[0];
    assert!(
        example.a.as_deref().unwrap().contains("\"state\":\"Y\"")
            && example.b.as_deref().unwrap().contains("\"expected\":\"e\""),
        "{example:?}"
    );
    // The same inputs give the same report.
    assert_eq!(diff(&same, &new), report, "the report is deterministic");

    // `until`: the fork stops before the first record at that event time.
    let time = |l: &String| l.split(',').nth(2).unwrap().parse::<i64>().unwrap();
    let end = time(&second[second.len() / 2]);
    let read = second.iter().take_while(|l| time(l) < end).count() as u64;
    let (report, until) = fork(artifacts::STATE_MACHINE, "fork-until", Some(end));
    assert_eq!(report.totals.records_read, read);
    let partial = read_output(&until);
    assert!(!partial.is_empty() && partial.len() < after.len());
    let (_, again) = fork(artifacts::STATE_MACHINE, "fork-same-2", None);
    let equal = diff(&same, &again);
    assert_eq!(equal.equal, after.len() as u64, "{equal}");
    assert_eq!(equal.changed, 0);
}

/// A fork's plan: the live job's, renamed, with the new plugin, a bounded
/// source, its own output and no control endpoint; an operator the job
/// does not have, or no name in a chain of several, is refused.
#[test]
fn a_fork_plan_changes_only_what_a_fork_changes() {
    let job = Job::new("fork-plan", 1_000, artifacts::STATE_MACHINE, 2, "");
    job.set_follow(true);
    let live = live_plan(&job);
    let spec = Fork {
        from_savepoint: "latest".into(),
        plugin: artifacts::REFORMAT.into(),
        operator: None,
        out: job.root.join("fork-out"),
        until: Some(42),
        parallelism: 1,
        overwrite: false,
    };
    let plan = fork::plan(&live, &spec).unwrap();
    assert_eq!(plan.name, fork::name("fork-plan", &spec.out));
    // Forks into other folders get other names (they run side by side).
    let other = job.root.join("fork-out-2");
    assert_ne!(fork::name("fork-plan", &other), plan.name);
    assert_eq!(plan.parallelism, 1);
    assert!(plan.control.is_none());
    assert!(matches!(
        &plan.operators[0].plugin,
        weir::config::PluginSource::Path(p) if p == &PathBuf::from(artifacts::REFORMAT)
    ));
    let mut plan = plan;
    let source = file_source(&mut plan);
    assert!(!source.follow);
    assert_eq!(source.until, Some(42));
    assert!(matches!(
        &plan.sink,
        weir::config::SinkSpec::Files(f) if f.dir == spec.out
    ));
    assert_eq!(
        plan.dead_letter,
        Some(weir::config::DeadLetterSpec::File(
            spec.out.join("dead-letters.jsonl")
        ))
    );
    assert!(!spec.out.exists(), "planning touches nothing");

    let unknown = Fork {
        operator: Some("nope".into()),
        ..spec.clone()
    };
    let e = fork::plan(&live, &unknown).unwrap_err().to_string();
    assert!(e.contains("has no operator `nope`"), "{e}");
    let mut chain = live.clone();
    chain.operators.push(chain.operators[0].clone());
    chain.operators[1].name = "second".into();
    let e = fork::plan(&chain, &spec).unwrap_err().to_string();
    assert!(e.contains("several operators"), "{e}");
}

/// `--out` at the live job's sink folder (or inside it, or holding it) or
/// at a source folder is refused, and so is a non-empty one unless told
/// to overwrite; a refusal touches nothing.
#[test]
fn a_fork_into_the_jobs_own_folders_or_a_full_one_is_refused() {
    let job = Job::new(
        "fork-out",
        1_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 100\n",
    );
    let live = live_plan(&job);
    job.run_ok(&["run", job.file().to_str().unwrap()]);
    let output = job.output();
    assert!(!output.is_empty());
    let events = weir_tests::csv_lines(&job.root.join("events"));
    let spec = |out: PathBuf, overwrite: bool| Fork {
        from_savepoint: "latest".into(),
        plugin: artifacts::REFORMAT.into(),
        operator: None,
        out,
        until: None,
        parallelism: 1,
        overwrite,
    };
    for (out, says) in [
        (job.root.join("out"), "sink folder"),
        (job.root.join("out/sub"), "sink folder"),
        (job.root.clone(), "sink folder"),
        (job.root.join("events"), "source folder"),
        (job.root.join("events/x"), "source folder"),
    ] {
        let e = fork::run(&live, &spec(out.clone(), true), Arc::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{}: {e}", out.display());
    }
    assert_same_output(&job.output(), &output, "the job's output is untouched");
    assert_eq!(weir_tests::csv_lines(&job.root.join("events")), events);

    let full = job.root.join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "mine").unwrap();
    let e = fork::run(&live, &spec(full.clone(), false), Arc::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty") && e.contains("--overwrite"), "{e}");
    let report = fork::run(&live, &spec(full.clone(), true), Arc::default()).unwrap();
    let marker = std::fs::read_to_string(full.join(".weir-sink/job")).unwrap();
    assert!(marker.contains(&report.name), "{marker}");
    // Again into the same folder: the earlier fork's output is replaced.
    let first = read_output(&full);
    fork::run(&live, &spec(full.clone(), true), Arc::default()).unwrap();
    assert_eq!(read_output(&full), first);
    assert_eq!(
        std::fs::read_to_string(full.join("notes.txt")).unwrap(),
        "mine"
    );
}
