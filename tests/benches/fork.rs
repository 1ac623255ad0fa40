//! Benchmark of a what-if fork's cost to the live job: the state-machine
//! job (file source, file sink, one worker thread) runs over the same input
//! from the same checkpoint alone, then with `weir fork` (one worker
//! thread) running beside it, at the fork's default niceness (10) and at 0.
//! Both are the `weir` binary, as a user runs them. Prints the live job's
//! events/s each way and the fork's.
//!
//! `cargo bench -p weir-tests --bench fork` (`WEIR_BENCH_EVENTS`, default
//! 5 000 000; 1M addresses).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::generate::{GenerateConfig, generate};
use weir_tests::artifacts;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-it");

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events: u64 = if benchmarking {
        weir_tests::env_or("WEIR_BENCH_EVENTS", 5_000_000)
    } else {
        20_000
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let gen_dir = root.join("gen");
    generate(
        &gen_dir,
        &GenerateConfig {
            seed: 5,
            events,
            max_address: 1_000_000,
            max_machines: 100_000,
            file_size: u64::MAX,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let lines = weir_tests::csv_lines(&gen_dir);
    let events_dir = root.join("events");
    std::fs::create_dir_all(&events_dir).unwrap();
    std::fs::write(
        events_dir.join("events-000000.csv"),
        lines[..1000].join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(
        root.join("job.toml"),
        format!(
            r#"
name = "fork-bench-{pid}"
parallelism = 1
[source]
type = "files"
path = "events"
format = "csv"
key_column = 0
timestamp_column = 2
[[operators]]
name = "op"
plugin = "{plugin}"
[sink]
type = "file"
path = "out"
[dead_letter]
path = "dead-letters.jsonl"
[control]
enabled = false
[checkpoints]
interval_ms = 600000
"#,
            pid = std::process::id(),
            plugin = artifacts::STATE_MACHINE
        ),
    )
    .unwrap();
    let job = root.join("job.toml");
    // Checkpoint 1 (the final one of a run with periodic checkpoints) at
    // the end of the first 1000 events: every run starts
    // there and reads the rest.
    run_ok(root, &["run", job.to_str().unwrap()]);
    std::fs::write(
        events_dir.join("events-000001.csv"),
        lines[1000..].join("\n") + "\n",
    )
    .unwrap();
    let rest = (lines.len() - 1000) as f64;
    let live = || {
        Command::new(WEIR)
            .current_dir(root)
            .env("WEIR_LOG", "warn")
            .args(["run", job.to_str().unwrap(), "--from-savepoint", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let fork = |nice: &str, out: &str| {
        Command::new(WEIR)
            .current_dir(root)
            .env("WEIR_LOG", "warn")
            .args(["fork", job.to_str().unwrap(), "--from-savepoint", "1"])
            .args(["--plugin", artifacts::STATE_MACHINE, "--out", out])
            .args(["--parallelism", "1", "--nice", nice])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let time = |mut c: std::process::Child| {
        let t = Instant::now();
        assert!(c.wait().unwrap().success());
        t.elapsed()
    };
    println!(
        "{} events after the checkpoint, 1M addresses, one worker thread each, 2 cores",
        rest as u64
    );
    let alone = time(live());
    let rate = |d: Duration| rest / d.as_secs_f64();
    println!("{:<34} {:>12.0} events/s", "live job alone", rate(alone));
    for nice in ["10", "0"] {
        let started = Instant::now();
        let f = fork(nice, &format!("fork-out-{nice}"));
        let with = time(live());
        let mut f = f;
        assert!(f.wait().unwrap().success());
        let fork_time = started.elapsed();
        println!(
            "{:<34} {:>12.0} events/s ({:.2}x alone); the fork {:.0} events/s",
            format!("live job beside a fork at nice {nice}"),
            rate(with),
            rate(with) / rate(alone),
            rest / fork_time.as_secs_f64(),
        );
    }
}

fn run_ok(root: &Path, args: &[&str]) {
    let out = Command::new(WEIR)
        .current_dir(root)
        .env("WEIR_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weir {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
