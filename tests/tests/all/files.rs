//! The file source as users meet it: files as spreadsheet programs and
//! Windows tools write them, lines appended to files already read, lines
//! over the length limit, files in an S3 bucket, and starting at a time
//! with the index that maps files to times.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir::checkpoint::manifest;
use weir::checkpoint::store::{StateStore, StoreSpec};
use weir::config::CheckpointPlan;
use weir::job::{RunOptions, run};
use weir_tests::{
    artifacts, assert_same_output, file_source, read_dead_letters, read_output, state_machine_plan,
};

use crate::savepoints::Job;

/// Checkpoints in `root/state`, every `interval`.
fn checkpoints(root: &Path, interval: Option<Duration>) -> CheckpointPlan {
    CheckpointPlan {
        store: StoreSpec {
            url: format!("file://{}", root.join("state").display()),
            ..StoreSpec::default()
        },
        interval,
        retain: 100_000,
        savepoint_every_event_time_ms: None,
        snapshot_chunk_bytes: Some(CheckpointPlan::DEFAULT_CHUNK_BYTES),
    }
}

/// Every byte the sink committed, all part files together.
fn output_bytes(out: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// (file name, line, reason) of each dead letter.
fn dead_letters(out: &Path) -> Vec<(String, u64, String)> {
    read_dead_letters(&out.join("dead-letters.jsonl"))
        .iter()
        .map(|d| {
            let file = d["file"].as_str().unwrap_or_default();
            let name = file.rsplit('/').next().unwrap_or_default().to_string();
            (
                name,
                d["line"].as_u64().unwrap_or(u64::MAX),
                d["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn csv_as_spreadsheets_and_windows_tools_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    // A spreadsheet's export: byte order mark, header, CRLF line ends,
    // quoted fields holding commas, doubled quotes and a line break, a
    // blank line, and no line end after the last line.
    let mut a = b"\xEF\xBB\xBFaddress,event,ts\r\n".to_vec();
    a.extend_from_slice(b"1,a,10\r\n");
    a.extend_from_slice(b"\"2\",\"say \"\"hi\"\", then\r\nwave\",11\r\n");
    a.extend_from_slice(b"\r\n");
    a.extend_from_slice(b"3,x,not-a-time\r\n");
    a.extend_from_slice(b"4,\"b,c\",12");
    std::fs::write(events.join("a.csv"), &a).unwrap();
    // A Windows tool's "Unicode" text: UTF-16 little endian.
    let mut b = vec![0xFF, 0xFE];
    for c in "5,a,13\r\n".encode_utf16() {
        b.extend_from_slice(&c.to_le_bytes());
    }
    std::fs::write(events.join("b.csv"), &b).unwrap();
    std::fs::write(events.join("c.csv"), "address,event,ts\n6,a,14\n").unwrap();

    let out = dir.path().join("out");
    let mut plan = state_machine_plan(&events, &out, 2, artifacts::ECHO);
    file_source(&mut plan).header = true;
    let report = run(&plan, RunOptions::default()).unwrap();
    let text = output_bytes(&out);
    for want in [
        "1=1,a,10",
        "2=\"2\",\"say \"\"hi\"\", then\r\nwave\",11",
        "4=4,\"b,c\",12",
        "6=6,a,14",
    ] {
        assert!(text.contains(want), "{want:?} not in the output {text:?}");
    }
    assert!(!text.contains("address"), "the header is not a record");
    assert!(
        !text.contains('\u{feff}'),
        "the byte order mark is not data"
    );
    assert_eq!(report.totals.records_read, 4, "{text:?}");
    let dead = dead_letters(&out);
    assert_eq!(dead.len(), 2, "{dead:#?}");
    // The record after the quoted line break keeps its own line number.
    assert!(
        dead.iter()
            .any(|(f, l, r)| f == "a.csv" && *l == 6 && r.contains("timestamp column 2")),
        "{dead:#?}"
    );
    assert!(
        dead.iter().any(|(f, l, r)| f == "b.csv"
            && *l == 0
            && r.contains("UTF-16")
            && r.contains("iconv")),
        "{dead:#?}"
    );
}

#[test]
fn a_line_over_the_limit_is_one_dead_letter_and_no_checkpoint_lands_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let long = 50usize << 20;
    let mut a = b"1,a,10\n".to_vec();
    let long_at = a.len() as u64;
    a.extend(std::iter::repeat_n(b'x', long));
    a.extend_from_slice(b"\n2,c,11\nnot,a,line\n3,a,12\n");
    let long_end = long_at + long as u64 + 1;
    std::fs::write(events.join("a.csv"), &a).unwrap();

    let out = dir.path().join("out");
    let mut plan = state_machine_plan(&events, &out, 1, artifacts::ECHO);
    plan.checkpoint = Some(checkpoints(dir.path(), Some(Duration::from_millis(1))));
    let report = run(&plan, RunOptions::default()).unwrap();
    assert_eq!(report.totals.records_read, 3);
    let dead = dead_letters(&out);
    assert_eq!(dead.len(), 2, "one per over-long line: {dead:#?}");
    assert!(
        dead.iter().any(|(_, l, r)| *l == 2
            && r.contains(&format!("{long} bytes"))
            && r.contains("16 MiB")),
        "{dead:#?}"
    );
    assert!(
        dead.iter().any(|(_, l, _)| *l == 4),
        "later lines keep their numbers: {dead:#?}"
    );
    let store = StateStore::open(&plan.checkpoint.as_ref().unwrap().store, dir.path()).unwrap();
    let found = manifest::list(&store, &plan.name).unwrap();
    assert!(found.len() > 1, "checkpoints were taken");
    for f in &found {
        let offset = f.manifest.source.position["offset"].as_u64().unwrap_or(0);
        assert!(
            offset <= long_at || offset >= long_end,
            "checkpoint {} at byte {offset}, inside the long line ({long_at}..{long_end})",
            f.folder
        );
    }
}

/// `n` echo records `prefix<i>,a,<ts>` as lines, and what the echo plugin
/// makes of them.
fn lines(prefix: &str, n: usize, ts: usize) -> (String, Vec<String>) {
    let text = (0..n)
        .map(|i| format!("{prefix}{i},a,{}\n", ts + i))
        .collect();
    let want = (0..n)
        .map(|i| format!("{prefix}{i}={prefix}{i},a,{}", ts + i))
        .collect();
    (text, want)
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn lines_appended_to_a_file_already_read_are_read_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let out = dir.path().join("out");
    let (a, mut want) = lines("a", 50, 0);
    let (b, more) = lines("b", 50, 100);
    want.extend(more);
    std::fs::write(events.join("a.csv"), a).unwrap();
    std::fs::write(events.join("b.csv"), b).unwrap();
    let mut plan = state_machine_plan(&events, &out, 2, artifacts::ECHO);
    // No periodic checkpoint: the one at the end of the input.
    plan.checkpoint = Some(checkpoints(dir.path(), Some(Duration::from_secs(3600))));
    run(&plan, RunOptions::default()).unwrap();

    // Lines appended to the first file, which the job read to the end.
    let (more_a, more) = lines("c", 20, 200);
    want.extend(more);
    append(&events.join("a.csv"), &more_a);
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let report = run(&plan, resume).unwrap();
    assert_eq!(report.totals.records_read, 20, "only the appended lines");
    want.sort();
    assert_same_output(&read_output(&out), &want, "after the restore");

    // A file changed in the part already read is refused, not skipped.
    let text = std::fs::read_to_string(events.join("b.csv")).unwrap();
    std::fs::write(events.join("b.csv"), text.replacen("b1,", "B1,", 1)).unwrap();
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let err = run(&plan, resume).unwrap_err().to_string();
    assert!(err.contains("b.csv") && err.contains("changed"), "{err}");
    assert_same_output(&read_output(&out), &want, "nothing touched");
}

#[test]
fn follow_reads_lines_appended_to_a_file_it_read_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let out = dir.path().join("out");
    let (a, mut want) = lines("a", 10, 0);
    std::fs::write(events.join("a.csv"), a).unwrap();
    let mut plan = state_machine_plan(&events, &out, 2, artifacts::ECHO);
    file_source(&mut plan).follow = true;
    file_source(&mut plan).poll_interval = Duration::from_millis(10);
    plan.checkpoint = Some(checkpoints(dir.path(), Some(Duration::from_millis(20))));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = |stop: &std::sync::Arc<std::sync::atomic::AtomicBool>| {
        let plan = plan.clone();
        let options = RunOptions {
            stop: stop.clone(),
            resume: true,
            ..RunOptions::default()
        };
        std::thread::spawn(move || run(&plan, options))
    };
    let wait = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while (!out.exists() || read_output(&out).len() < n) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let job = start(&stop);
    wait(want.len());
    // Whole lines, then a line written in two parts: the first part waits
    // for its line end.
    let (more, w) = lines("b", 5, 10);
    want.extend(w);
    append(&events.join("a.csv"), &more);
    append(&events.join("a.csv"), "c0,a,");
    std::thread::sleep(Duration::from_millis(200));
    append(&events.join("a.csv"), "20\n");
    want.push("c0=c0,a,20".into());
    wait(want.len());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    job.join().unwrap().unwrap();

    // Appended while the job was stopped: read after the restart.
    let (more, w) = lines("d", 5, 30);
    want.extend(w);
    append(&events.join("a.csv"), &more);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job = start(&stop);
    wait(want.len());
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    job.join().unwrap().unwrap();
    want.sort();
    assert_same_output(&read_output(&out), &want, "every line once");
}

/// The S3 test server's URL with a fresh prefix for this test.
pub(crate) fn s3_prefix(tag: &str) -> String {
    let url = std::env::var("WEIR_S3_URL").expect(
        "WEIR_S3_URL is not set: start the S3 test server with \
         `eval \"$(scripts/s3-server.sh start)\"` (scripts/test.sh does)",
    );
    format!(
        "{}/{tag}-{}-{}",
        url.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    )
}

#[test]
fn files_in_s3_give_the_output_of_the_same_files_on_disk_through_kills() {
    let job = Job::new(
        "files-s3",
        1_000_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 25\nretain = 2\n",
    );
    let expected = job.reference();
    assert!(!expected.is_empty());
    let prefix = s3_prefix("events");
    weir_tests::upload(&job.root.join("events"), &prefix);
    let text = std::fs::read_to_string(job.file()).unwrap();
    std::fs::write(
        job.file(),
        text.replacen("path = \"events\"", &format!("path = \"{prefix}\""), 1),
    )
    .unwrap();
    // Uninterrupted, from S3.
    job.run_ok(&["run", job.file().to_str().unwrap(), "--fresh"]);
    assert_same_output(&job.output(), &expected, "from S3");
    // Killed (SIGKILL) at random moments, each restart from the latest
    // checkpoint, starting over from nothing.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    std::fs::remove_dir_all(job.root.join("weir-state")).ok();
    std::fs::remove_dir_all(job.root.join("out")).ok();
    let mut restored = 0;
    for _ in 0..5 {
        let has = !manifest::list(&job.store(), &job.name).unwrap().is_empty();
        restored += usize::from(has);
        let mut child = job.spawn(has.then_some("latest"));
        weir_tests::stages::xorshift(&mut rng);
        std::thread::sleep(Duration::from_millis(150 + rng % 600));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(restored > 0, "some runs restored from a checkpoint");
    let has = !manifest::list(&job.store(), &job.name).unwrap().is_empty();
    let file = job.file();
    let mut args = vec!["run", file.to_str().unwrap()];
    if has {
        args.extend(["--from-savepoint", "latest"]);
    }
    job.run_ok(&args);
    assert_same_output(&job.output(), &expected, "from S3 after kills");
}

/// `weir files index` as a user runs it.
fn weir_index(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-plain"))
        .args(["files", "index"])
        .args(args)
        .args(["--format", "csv", "--timestamp-column", "2", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, err)
}

#[test]
fn the_index_maps_files_to_times_and_is_rebuilt_when_a_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    std::fs::write(events.join("1.csv"), "1,a,100\n2,a,90\n3,a,150\n").unwrap();
    std::fs::write(events.join("2.csv"), "4,a,200\nbad\n5,a,260\n").unwrap();
    let loc = events.to_str().unwrap();
    let (rows, err) = weir_index(&[loc]);
    assert!(err.contains("2 indexed now"), "{err}");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["first_ms"], 100);
    assert_eq!(rows[0]["last_ms"], 150);
    assert_eq!(rows[0]["min_ms"], 90);
    assert_eq!(rows[0]["records"], 3);
    assert_eq!(rows[1]["records"], 2);
    assert_eq!(rows[1]["max_ms"], 260);
    assert!(
        events.join(".weir-index.json").exists(),
        "kept beside the files"
    );
    // Again: nothing rescanned.
    let (again, err) = weir_index(&[loc]);
    assert!(err.contains("0 indexed now"), "{err}");
    assert_eq!(again, rows);
    // One file changes: only it is rescanned.
    std::thread::sleep(Duration::from_millis(20));
    append(&events.join("2.csv"), "6,a,300\n");
    let (changed, err) = weir_index(&[loc]);
    assert!(err.contains("1 indexed now"), "{err}");
    assert_eq!(changed[1]["records"], 3);
    assert_eq!(changed[1]["last_ms"], 300);
}

#[test]
fn start_at_skips_earlier_files_and_starts_at_the_right_record() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    std::fs::write(events.join("1.csv"), "1,a,100\n2,a,110\n").unwrap();
    std::fs::write(events.join("2.csv"), "3,a,200\n4,a,210\n5,a,220\n6,a,215\n").unwrap();
    std::fs::write(events.join("3.csv"), "7,a,300\n").unwrap();
    let out = dir.path().join("out");
    let mut plan = state_machine_plan(&events, &out, 1, artifacts::ECHO);
    file_source(&mut plan).start_at = Some(210);
    let report = run(&plan, RunOptions::default()).unwrap();
    assert_eq!(
        read_output(&out),
        vec!["4=4,a,210", "5=5,a,220", "6=6,a,215", "7=7,a,300"]
    );
    assert_eq!(report.totals.records_read, 4);
    assert!(events.join(".weir-index.json").exists());
    // A time after every event: nothing is read.
    let out2 = dir.path().join("out2");
    let mut plan = state_machine_plan(&events, &out2, 1, artifacts::ECHO);
    file_source(&mut plan).start_at = Some(1000);
    let report = run(&plan, RunOptions::default()).unwrap();
    assert_eq!(report.totals.records_read, 0);
}

#[test]
fn follow_reads_new_objects_under_an_s3_prefix_and_a_replaced_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let (a, mut want) = lines("a", 10, 0);
    std::fs::write(local.join("1.csv"), a).unwrap();
    let prefix = s3_prefix("follow");
    weir_tests::upload(&local, &prefix);
    let out = dir.path().join("out");
    let mut plan = state_machine_plan(&local, &out, 2, artifacts::ECHO);
    file_source(&mut plan).url = Some(prefix.clone());
    file_source(&mut plan).follow = true;
    file_source(&mut plan).poll_interval = Duration::from_millis(20);
    plan.checkpoint = Some(checkpoints(dir.path(), Some(Duration::from_millis(20))));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job = {
        let (plan, stop) = (plan.clone(), stop.clone());
        std::thread::spawn(move || {
            run(
                &plan,
                RunOptions {
                    stop,
                    ..RunOptions::default()
                },
            )
        })
    };
    let wait = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while (!out.exists() || read_output(&out).len() < n) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(want.len());
    // A new object arrives under the prefix while the job runs.
    let (b, more) = lines("b", 10, 100);
    want.extend(more);
    std::fs::remove_file(local.join("1.csv")).unwrap();
    std::fs::write(local.join("2.csv"), b).unwrap();
    weir_tests::upload(&local, &prefix);
    wait(want.len());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    job.join().unwrap().unwrap();
    want.sort();
    assert_same_output(&read_output(&out), &want, "every object once");

    // An object replaced with other content since it was read: refused.
    std::fs::remove_file(local.join("2.csv")).unwrap();
    std::fs::write(local.join("1.csv"), "z0,a,1\nz1,a,2\nz2,a,3\nz3,a,4\n").unwrap();
    weir_tests::upload(&local, &prefix);
    let err = run(
        &plan,
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("1.csv") && err.contains("replaced") && err.contains("not change"),
        "{err}"
    );
}
