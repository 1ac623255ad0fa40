//! Benchmark of history throughput: the state-machine job (file source,
//! file sink, two worker threads) over the same CSV files read from a
//! local folder and from an S3 prefix (the S3 test server of
//! `scripts/s3-server.sh`), in one run. Prints events/s and MiB/s of each,
//! and the S3 run's share of the local one.
//!
//! `cargo bench -p weir-tests --bench files` (`WEIR_BENCH_EVENTS`, default
//! 5 000 000; needs `WEIR_S3_URL` and the `AWS_*` settings the script
//! exports). Without `--bench` (the suite's smoke run) it reads 20 000
//! events.

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
}
