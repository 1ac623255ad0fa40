//! Savepoint timelines and the file sink's folder: a restore of any
//! savepoint gives exactly that savepoint's committed output plus what
//! follows, whatever another timeline wrote since; files the sink did not
//! write are never removed, by a restore, a plain run or `--fresh`.

use std::time::{Duration, Instant};

use crate::savepoints::Job;
use weir_tests::{artifacts, assert_same_output};

/// The job's counters from its control endpoint.
fn status(job: &Job) -> Option<serde_json::Value> {
    let endpoint = weir::runtime::control::find_in(&job.root.join("run"), &job.name).ok()?;
    let (code, body) = endpoint.request("GET", "/status").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Wait until the running job has read (or refused as malformed) `lines`
/// input lines.
fn wait_read(job: &Job, lines: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "the job did not read {lines} lines"
        );
        if let Some(v) = status(job) {
            let n = v["records_read"].as_u64().unwrap_or(0) + v["malformed"].as_u64().unwrap_or(0);
            if n >= lines {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of the events folder, all files.
fn input_lines(job: &Job) -> u64 {
    std::fs::read_dir(job.root.join("events"))
        .unwrap()
        .map(|e| {
            let text = std::fs::read(e.unwrap().path()).unwrap();
            text.iter().filter(|&&b| b == b'\n').count() as u64
        })
        .sum()
}

/// 500 events in file `name` (sorted after the generated ones) that each
/// raise an alert (`b` is not valid in the initial state), for addresses
/// from `first` on, which the generated input does not use.
fn more_input(job: &Job, name: &str, first: u64) {
    let text: String = (0..500)
        .map(|i| format!("{},b,{}\n", first + i, 4_000_000_000_000 + first + i))
        .collect();
    let tmp = job.root.join("more.csv.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, job.root.join("events").join(name)).unwrap();
}

/// Issue 25's reproduction: savepoint `before-fix`; more input; stop with
/// savepoint `final`; more input; run from `before-fix` to the end; then
/// from `final` to the end: the output is one uninterrupted run's, not
/// the duplicate alerts the other timeline's part files (kept under the
/// names `final` had committed) used to add.
#[test]
fn restoring_savepoints_of_two_timelines_gives_one_runs_output() {
    let job = Job::following("timelines", "[checkpoints]\ninterval_ms = 100\n");
    let file = job.file();
    let file = file.to_str().unwrap();
    let mut child = job.spawn(None);
    job.wait_running();
    wait_read(&job, input_lines(&job));
    job.run_ok(&["savepoint", "trigger", file, "--name", "before-fix"]);
    more_input(&job, "zz-more-1.csv", 900_000);
    wait_read(&job, input_lines(&job));
    job.run_ok(&["stop", file, "--savepoint", "--name", "final"]);
    assert!(child.wait().unwrap().success());
    more_input(&job, "zz-more-2.csv", 950_000);

    job.set_follow(false);
    let expected = job.reference();
    // The other timeline: from `before-fix` to the end.
    job.run_ok(&["run", file, "--from-savepoint", "before-fix"]);
    assert_same_output(&job.output(), &expected, "from before-fix");
    // Back to `final`: its committed output plus what follows (nothing).
    job.run_ok(&["run", file, "--from-savepoint", "final"]);
    assert_same_output(
        &job.output(),
        &expected,
        "from final after another timeline",
    );
    // And back again, and a plain run (it resumes from the latest).
    job.run_ok(&["run", file, "--from-savepoint", "before-fix"]);
    assert_same_output(&job.output(), &expected, "from before-fix again");
    job.run_ok(&["run", file]);
    assert_same_output(&job.output(), &expected, "a plain run after it");
}

/// A plain run and `--fresh` leave files the sink did not write alone; a
/// foreign part file under a name the sink must write refuses the run
/// before anything is changed.
#[test]
fn a_run_never_removes_files_the_sink_did_not_write() {
    let job = Job::new("foreign-files", 20_000, artifacts::STATE_MACHINE, 2, "");
    let file = job.file();
    let file = file.to_str().unwrap();
    let out = job.root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let theirs = ["part-notes.jsonl", "part-0000-000000.jsonl.orig", "README"];
    for name in theirs {
        std::fs::write(out.join(name), format!("{name}\n")).unwrap();
    }
    let expected = job.reference();
    job.run_ok(&["run", file]);
    job.run_ok(&["run", file, "--fresh"]);
    job.run_ok(&["run", file]);
    for name in theirs {
        assert_eq!(
            std::fs::read_to_string(out.join(name)).unwrap(),
            format!("{name}\n"),
            "{name} is kept"
        );
    }
    let ours: Vec<String> = job
        .output()
        .into_iter()
        .filter(|l| !theirs.contains(&l.as_str()))
        .collect();
    assert_same_output(&ours, &expected, "output beside foreign files");

    // A foreign file where the sink writes next: refused, nothing changed.
    std::fs::write(out.join("part-0001-000099.jsonl"), "theirs\n").unwrap();
    let before = weir_tests::read_output(&out);
    let failed = job.weir().args(["run", file, "--fresh"]).output().unwrap();
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "refused");
    assert!(
        err.contains("part-0001-000099.jsonl") && err.contains("did not write"),
        "{err}"
    );
    assert_eq!(weir_tests::read_output(&out), before, "nothing changed");
}

/// A sink folder that is, holds or lies inside another job's sink folder,
/// or that holds the job's source folder, is refused before anything is
/// touched.
#[test]
fn overlapping_sink_folders_are_refused() {
    let job = Job::new("overlap-a", 5_000, artifacts::STATE_MACHINE, 1, "");
    let file = job.file();
    job.run_ok(&["run", file.to_str().unwrap()]);
    let output = job.output();
    assert!(!output.is_empty());
    let out = job.root.join("out");
    let other = |name: &str, sink: &std::path::Path, events: &std::path::Path| {
        let mut plan = weir_tests::state_machine_plan(events, sink, 1, artifacts::STATE_MACHINE);
        plan.name = name.into();
        plan.dead_letter = None;
        weir::job::run(&plan, weir::job::RunOptions::default())
            .unwrap_err()
            .to_string()
    };
    let events = job.root.join("events");
    for sink in [out.clone(), out.join("sub"), job.root.clone()] {
        let e = other("overlap-b", &sink, &events);
        assert!(
            e.contains("sink folder of job `overlap-a`") || e.contains("source folder"),
            "{}: {e}",
            sink.display()
        );
    }
    let e = other("overlap-b", &out.join("sub"), &events);
    assert!(e.contains("sink folder of job `overlap-a`"), "{e}");
    // The job's source inside its sink folder.
    let inner = job.root.join("outer/events");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::copy(
        std::fs::read_dir(&events)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        inner.join("a.csv"),
    )
    .unwrap();
    let e = other("overlap-c", &job.root.join("outer"), &inner);
    assert!(e.contains("overlaps the source folder"), "{e}");
    assert!(
        !job.root.join("outer/.weir-sink").exists(),
        "nothing touched"
    );
    assert_same_output(&job.output(), &output, "the first job's output");
}
