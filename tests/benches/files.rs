//! Benchmark of history throughput: the state-machine job (file source,
//! file sink, two worker threads) over the same CSV files read from a
//! local folder and from an S3 prefix (the S3 test server of
//! `scripts/s3-server.sh`), in one run. Prints events/s and MiB/s of each,
//! and the S3 run's share of the local one.
//!
//! Then the switch of a hybrid job (the same files, then a Kafka topic of
//! the test broker, `scripts/kafka.sh`): the `weir` binary runs it with
//! its output on standard output, and the benchmark prints the history's
//! rate, the pause at the switch (from the last file record read to the
//! first Kafka record read, as the job logs it) and the time from the last
//! file to the first output line of a Kafka record (read from the job's
//! pipes as they come).
//!
//! `cargo bench -p weir-tests --bench files` (`WEIR_BENCH_EVENTS`, default
//! 5 000 000; needs `WEIR_S3_URL` and the `AWS_*` settings the script
//! exports, and `KAFKA_BROKERS`). Without `--bench` (the suite's smoke run)
//! it reads 20 000 events.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{artifacts, file_source, state_machine_plan};

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events: u64 = if benchmarking {
        weir_tests::env_or("WEIR_BENCH_EVENTS", 5_000_000)
    } else {
        20_000
    };
    let url = std::env::var("WEIR_S3_URL").expect(
        "WEIR_S3_URL is not set: start the S3 test server with \
         `eval \"$(scripts/s3-server.sh start)\"`",
    );
    let dir = tempfile::tempdir().unwrap();
    let events_dir = dir.path().join("events");
    generate(
        &events_dir,
        &GenerateConfig {
            seed: 7,
            events,
            max_address: 1_000_000,
            max_machines: 100_000,
            file_size: 64 << 20,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let bytes: u64 = std::fs::read_dir(&events_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let prefix = format!(
        "{}/bench-files-{}",
        url.trim_end_matches('/'),
        std::process::id()
    );
    weir_tests::upload(&events_dir, &prefix);

    let measure = |what: &str, s3: bool| {
        let out = dir.path().join(format!("out-{what}"));
        let mut plan = state_machine_plan(&events_dir, &out, 2, artifacts::STATE_MACHINE);
        if s3 {
            file_source(&mut plan).url = Some(prefix.clone());
        }
        let t = Instant::now();
        let report = run(&plan, RunOptions::default()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.totals.records_read + report.totals.malformed, events);
        let rate = events as f64 / secs;
        println!(
            "files {what:<6} {events} events, {:.1} MiB in {secs:.2} s: {:.2}M events/s, {:.0} MiB/s",
            bytes as f64 / (1 << 20) as f64,
            rate / 1e6,
            bytes as f64 / (1 << 20) as f64 / secs
        );
        rate
    };
    let local = measure("local", false);
    let s3 = measure("s3", true);
    println!("files s3/local: {:.2}", s3 / local);
    switch(&events_dir, dir.path(), events);
}

/// Live records in the hybrid run: each an event no machine may start
/// with (`b` from the initial state), so each gives an alert at once, for
/// addresses far above the files' (those are at most 1 000 000).
const LIVE: u32 = 1_000;

/// First address of the live records.
const LIVE_BASE: u32 = 4_000_000_000;

/// The hybrid job over `events_dir` then a topic of [`LIVE`] records, run
/// by the `weir` binary (`until = "latest"`: it ends once they are read);
/// prints its switch figures.
fn switch(events_dir: &Path, dir: &Path, events: u64) {
    let topic = format!("bench-switch-{}", std::process::id());
    weir_tests::kafka::create_topic(&topic, 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let live: Vec<(String, String)> = (0..LIVE)
        .map(|i| {
            let a = (LIVE_BASE + i).to_string();
            (a.clone(), format!("{a},b,{now}"))
        })
        .collect();
    weir_tests::kafka::produce(
        &topic,
        live.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
    );
    let job = dir.join("switch.toml");
    std::fs::write(
        &job,
        format!(
            r#"
name = "bench-switch"
parallelism = 2
[source]
type = "hybrid"
[source.files]
path = "{events}"
format = "csv"
key_column = 0
timestamp_column = 2
[source.kafka]
brokers = "{brokers}"
topic = "{topic}"
format = "csv"
key_column = 0
timestamp_column = 2
start = "earliest"
until = "latest"
[[operators]]
name = "state-machine"
plugin = "{plugin}"
[sink]
type = "stdout"
[state]
url = "switch-state"
"#,
            events = events_dir.display(),
            brokers = weir_tests::kafka::brokers(),
            plugin = weir_tests::artifacts::STATE_MACHINE,
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir-plain"))
        .env("WEIR_RUN_DIR", dir.join("run"))
        .env("WEIR_LOG", "weir=info")
        .args(["run", "--fresh", job.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    // The first output line of a live record, when it came.
    let output = std::thread::spawn(move || {
        let marker = format!("\"address\":{}", LIVE_BASE / 1000);
        let mut first = None;
        let mut live = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains(&marker) {
                first.get_or_insert_with(Instant::now);
                live += 1;
            }
        }
        (first, live)
    });
    // When the job said every file was read, its own pause figure, and
    // all it said.
    let log = std::thread::spawn(move || {
        let (mut files_ended, mut pause_ms, mut said) = (None, None, String::new());
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("switching to Kafka") {
                files_ended.get_or_insert_with(Instant::now);
            }
            if let Some((_, rest)) = line.split_once("pause_ms=") {
                pause_ms = rest
                    .trim_matches('"')
                    .split('"')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok());
            }
            said.push_str(&line);
            said.push('\n');
        }
        (files_ended, pause_ms, said)
    });
    let status = child.wait().unwrap();
    let (first_output, live_alerts) = output.join().unwrap();
    let (files_ended, pause_ms, said) = log.join().unwrap();
    assert!(status.success(), "the hybrid run: {status}: {said}");
    assert_eq!(
        live_alerts, LIVE as usize,
        "an alert per live record: {said}"
    );
    let files_ended = files_ended.expect("the job logs the switch");
    let pause_ms = pause_ms.expect("the job logs the pause at the switch");
    let to_output = first_output
        .expect("live alerts")
        .saturating_duration_since(files_ended);
    let history = files_ended.duration_since(started);
    println!(
        "hybrid local: history {events} events in {:.2} s ({:.2}M events/s, the process's start \
         included); switch pause {pause_ms:.1} ms (last file record read to first Kafka record \
         read); last file to first Kafka record's output {:.1} ms",
        history.as_secs_f64(),
        events as f64 / history.as_secs_f64() / 1e6,
        to_output.as_secs_f64() * 1e3,
    );
}
