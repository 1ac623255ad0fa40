//! Progress while reprocessing, as a person watching a job sees it: a
//! hybrid job's `/status` in its history phase shows phase `files` with
//! files and bytes read that grow up to totals matching the folder, then
//! phase `live` with the consumer lag, and `/metrics` the same; `weir run`
//! with standard error not a terminal writes progress lines carrying the
//! figures, for a hybrid job and a files-only job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::generate::{GenerateConfig, generate};
use weir_tests::artifacts;
use weir_tests::kafka::{brokers, create_topic, produce_csv_dir};

/// Files in `dir` and their bytes.
fn folder_totals(dir: &Path) -> (u64, u64) {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .fold((0, 0), |(n, b), len| (n + 1, b + len))
}

/// The largest event time (third CSV column) in the files of `dir`.
fn max_event_time(dir: &Path) -> i64 {
    weir_tests::csv_lines(dir)
        .iter()
        .filter_map(|l| l.split(',').nth(2)?.trim().parse::<i64>().ok())
        .max()
        .unwrap()
}

/// `events` generated events in `root/all`; the first `history` files
/// copied to `root/history`, the rest to `root/live`.
fn split_events(root: &Path, events: u64, history: usize) {
    generate(
        &root.join("all"),
        &GenerateConfig {
            seed: 11,
            events,
            max_address: 5_000,
            file_size: 64 << 10,
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
}

/// `weir run` of `job` in `root` (the test binary with failpoints), with
/// progress lines every 200 ms; standard error is a pipe.
fn spawn(root: &Path, job: &str, failpoint: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir-it"))
        .env("WEIR_RUN_DIR", root.join("run"))
        .env("WEIR_LOG", "info")
        .env("WEIR_FAILPOINT", failpoint)
        .env("WEIR_PROGRESS_EVERY", "0.2")
        .current_dir(root)
        .args(["run", &format!("{job}.toml")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `/status` of the running job, parsed.
fn status(ep: &weir::runtime::control::Endpoint) -> Value {
    let (code, body) = ep.request("GET", "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Stop with SIGTERM (the job drains); what it wrote to standard error.
fn stop(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    err
}

/// The progress log lines of `log`, each as its `key=value` fields.
fn progress_lines(log: &str) -> Vec<std::collections::HashMap<String, String>> {
    log.lines()
        .filter(|l| l.contains(" progress "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn status_shows_the_history_phase_growing_to_the_folder_then_live_with_lag() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let name = "progress-hybrid";
    split_events(root, 40_000, 8);
    let (files, bytes) = folder_totals(&root.join("history"));
    create_topic(&format!("{name}-in"), 3);
    let live = produce_csv_dir(&root.join("live"), &format!("{name}-in"));
    std::fs::write(
        root.join(format!("{name}.toml")),
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
start = "earliest"
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "file"
path = "out"
[checkpoints]
interval_ms = 200
"#,
            brokers = brokers(),
            plugin = artifacts::STATE_MACHINE,
        ),
    )
    .unwrap();
    // 400 ms after each history file: a history phase of a few seconds.
    let child = spawn(root, name, "hybrid-file-ms:400");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ep = loop {
        if let Ok(ep) = weir::runtime::control::find_in(&root.join("run"), name) {
            break ep;
        }
        assert!(Instant::now() < deadline, "no control endpoint");
        std::thread::sleep(Duration::from_millis(20));
    };

    // The history phase: what was read grows, the totals are the folder's.
    let mut seen = Vec::new();
    let live_status = loop {
        let s = status(&ep);
        let p = &s["progress"];
        match p["phase"].as_str() {
            Some("files") if p["files_total"].as_u64() != Some(0) => {
                assert_eq!(p["files_total"].as_u64(), Some(files), "{p}");
                assert_eq!(p["bytes_total"].as_u64(), Some(bytes), "{p}");
                seen.push((
                    p["files_done"].as_u64().unwrap(),
                    p["bytes_done"].as_u64().unwrap(),
                ));
            }
            Some("live") if p["consumer_lag"].is_i64() => break s,
            Some(_) => {}
            None => panic!("no progress in /status: {s}"),
        }
        assert!(Instant::now() < deadline, "not live with a lag by now: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("history phase as /status showed it: {seen:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "what was read never goes back: {seen:?}"
    );
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert!(distinct.len() >= 3, "figures that grow: {seen:?}");
    assert!(
        seen.iter().any(|(f, b)| *f < files && *b < bytes),
        "seen part-way: {seen:?}"
    );
    // Live: every file read, the switch timed, the lag in records.
    let p = &live_status["progress"];
    assert_eq!(p["files_done"].as_u64(), Some(files), "{p}");
    assert_eq!(p["bytes_done"].as_u64(), Some(bytes), "{p}");
    assert!(p["switch"]["pause_ms"].as_f64().is_some(), "{p}");
    assert!(p["eta_s"].is_null(), "no time left live: {p}");
    // Caught up: the lag is 0 and every record was read.
    let total = 40_000;
    loop {
        let s = status(&ep);
        let p = &s["progress"];
        if p["consumer_lag"] == 0 && s["records_read"].as_u64() == Some(total) {
            assert_eq!(p["phase"], "live");
            assert!(
                p["event_time"].as_i64() >= Some(max_event_time(&root.join("history"))),
                "{p}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "not caught up ({live} live records): {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, metrics) = ep.request("GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    for line in [
        "weir_source_phase{phase=\"live\"} 1",
        "weir_source_phase{phase=\"files\"} 0",
        &format!("weir_source_files_listed {files}"),
        &format!("weir_source_files_done {files}"),
        &format!("weir_source_done_bytes {bytes}"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_source_switch_pause_seconds ")),
        "{metrics}"
    );

    // The same figures in the log lines (standard error is a pipe here).
    // A line comes every 200 ms, and the lag can have become known only
    // just now (once it was known 1.6 s after the switch, and the job was
    // stopped before the next line): give the reporter a few lines' time.
    std::thread::sleep(Duration::from_secs(1));
    let log = stop(child);
    for l in log
        .lines()
        .filter(|l| l.contains("progress") || l.contains("first Kafka"))
    {
        println!("{l}");
    }
    let lines = progress_lines(&log);
    let history: Vec<_> = lines
        .iter()
        .filter(|l| l.get("phase").map(String::as_str) == Some("files"))
        .collect();
    assert!(history.len() >= 2, "{log}");
    for l in &history {
        let (done, total) = l["files"].split_once('/').unwrap();
        assert_eq!(total, files.to_string(), "{l:?}");
        assert!(done.parse::<u64>().unwrap() <= files, "{l:?}");
        assert!(l["mib"].contains('/'), "{l:?}");
        assert!(l.contains_key("rate") && l.contains_key("percent"), "{l:?}");
    }
    assert!(history.iter().any(|l| l.contains_key("eta")), "{log}");
    assert!(
        history.iter().any(|l| l.contains_key("event_time")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.get("phase").map(String::as_str) == Some("live")
                && l.contains_key("lag")
                && l.contains_key("switch_pause_ms")),
        "{log}"
    );
}

#[test]
fn a_files_only_run_logs_files_and_bytes_of_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(
        &root.join("events"),
        &GenerateConfig {
            seed: 5,
            events: 3_000_000,
            max_address: 100_000,
            file_size: 8 << 20,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let (files, bytes) = folder_totals(&root.join("events"));
    std::fs::write(
        root.join("files.toml"),
        format!(
            r#"
name = "files"
[source]
type = "files"
path = "events"
format = "csv"
key_column = 0
timestamp_column = 2
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "file"
path = "out"
[checkpoints]
enabled = false
"#,
            plugin = artifacts::STATE_MACHINE,
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-plain"))
        .env("WEIR_RUN_DIR", root.join("run"))
        .env("WEIR_LOG", "info")
        .env("WEIR_PROGRESS_EVERY", "0.1")
        .current_dir(root)
        .args(["run", "files.toml"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let lines = progress_lines(&log);
    assert!(!lines.is_empty(), "{log}");
    let mut last_done = 0;
    for l in &lines {
        assert_eq!(l["phase"], "files", "{l:?}");
        let (done, total) = l["files"].split_once('/').unwrap();
        assert_eq!(total, files.to_string(), "{l:?}");
        let done: u64 = done.parse().unwrap();
        assert!(done >= last_done && done <= files, "{l:?}");
        last_done = done;
        assert_eq!(
            l["mib"].split_once('/').unwrap().1,
            format!("{:.1}", bytes as f64 / f64::from(1 << 20))
        );
        assert!(l.contains_key("event_time") || l["records"] == "0", "{l:?}");
    }
    // No lag for files.
    assert!(lines.iter().all(|l| !l.contains_key("lag")), "{log}");
}
