//! Benchmark of hot swaps: the state-machine plugin holding `WEIR_SWAP_KEYS`
//! live keys (default 1M, all in one partition: the hard case) swapped back
//! and forth between two builds of the same logic (another digest) through
//! the control endpoint, as `weir plugin swap` does. Per swap it prints the
//! pause at the barrier split into snapshot (old instance), instantiate
//! (new instance, its own store) and restore (into it), and the time until
//! the new version is promoted (probation: the next checkpoint).
//!
//! `cargo bench -p weir-tests --bench swap`
//!
//! Soak: `WEIR_SWAPS=1000 WEIR_SWAP_KEYS=10000 cargo bench -p weir-tests
//! --bench swap` (what `scripts/swap-soak.sh` runs) swaps 1000 times in one
//! process and prints the process's resident memory every 100 swaps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir::checkpoint::store::StoreSpec;
use weir::config::{CheckpointPlan, EngineSettings, PluginSource};
use weir::job::{RunOptions, run};
use weir::runtime::control::{Endpoint, find_in, query};
use weir_tests::{artifacts, env_or};

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let keys = env_or(
        "WEIR_SWAP_KEYS",
        if benchmarking { 1_000_000 } else { 5_000 },
    );
    let swaps = env_or("WEIR_SWAPS", if benchmarking { 6 } else { 2 });
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // SAFETY: set before any thread of this process reads the environment.
    unsafe { std::env::set_var("WEIR_RUN_DIR", &run_dir) };
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    // One `a` per address: every key ends in state W, all live.
    let mut w = std::io::BufWriter::new(std::fs::File::create(events.join("keys.csv")).unwrap());
    for i in 0..keys {
        writeln!(w, "{i},a,{}", 1_700_000_000_000u64 + i).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let versions = [
        PathBuf::from(artifacts::STATE_MACHINE),
        weir_tests::state_machine_variant(dir.path(), "b"),
    ];

    let mut plan = weir::demo::state_machine_plan(
        &events,
        &dir.path().join("out"),
        1,
        PluginSource::Path(versions[0].clone()),
    );
    plan.name = format!("swap-bench-{}", std::process::id());
    weir_tests::file_source(&mut plan).follow = true;
    weir_tests::file_source(&mut plan).poll_interval = Duration::from_millis(5);
    plan.engine = EngineSettings {
        memory_bytes: 3 << 30,
        call_timeout: Duration::from_secs(120),
        ..EngineSettings::default()
    };
    plan.checkpoint = Some(CheckpointPlan {
        store: StoreSpec {
            url: format!("file://{}", dir.path().join("state").display()),
            ..Default::default()
        },
        interval: None,
        retain: 1,
        savepoint_every_event_time_ms: None,
        snapshot_chunk_bytes: Some(CheckpointPlan::DEFAULT_CHUNK_BYTES),
    });
    plan.control = Some("127.0.0.1:0".parse().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job = std::thread::spawn({
        let plan = plan.clone();
        let stop = stop.clone();
        move || {
            run(
                &plan,
                RunOptions {
                    stop,
                    ..RunOptions::default()
                },
            )
        }
    });
    let endpoint = wait_for_keys(&run_dir, &plan.name, keys);
    println!(
        "{keys} live keys in one partition; {swaps} swaps between two builds of the \
         state-machine plugin"
    );
    println!(
        "{:>5} {:>10} {:>12} {:>15} {:>11} {:>13} {:>11}",
        "swap", "pause ms", "snapshot ms", "instantiate ms", "restore ms", "promoted ms", "RSS MiB"
    );
    let mut pauses = Vec::new();
    let rss_start = rss_mib();
    for i in 0..swaps {
        let to = &versions[((i + 1) % 2) as usize];
        let started = Instant::now();
        let path = format!(
            "/swap?{}",
            query(&[
                ("operator", "state-machine"),
                ("plugin", &to.to_string_lossy()),
                ("probation_batches", "0"),
            ])
        );
        let (code, body) = endpoint.request("POST", &path).unwrap();
        assert_eq!(code, 200, "swap {i}: {body}");
        let record: serde_json::Value = serde_json::from_str(&body).unwrap();
        let seq = record["seq"].as_u64().unwrap();
        let outcome = wait_outcome(&endpoint, seq);
        assert_eq!(outcome["outcome"], "promoted", "{outcome}");
        let p = &record["pause"];
        let ms = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
        pauses.push((
            ms("total_ms"),
            ms("snapshot_ms"),
            ms("instantiate_ms"),
            ms("restore_ms"),
        ));
        let report_row = !benchmarking || swaps <= 20 || (i + 1) % 100 == 0;
        if report_row {
            println!(
                "{:>5} {:>10.1} {:>12.1} {:>15.2} {:>11.1} {:>13.0} {:>11.1}",
                i + 1,
                ms("total_ms"),
                ms("snapshot_ms"),
                ms("instantiate_ms"),
                ms("restore_ms"),
                started.elapsed().as_secs_f64() * 1e3,
                rss_mib()
            );
        }
    }
    let median = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = pauses.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (total, snapshot, instantiate, restore) = (
        median(|p| p.0),
        median(|p| p.1),
        median(|p| p.2),
        median(|p| p.3),
    );
    println!(
        "median pause {total:.1} ms = snapshot {snapshot:.1} + instantiate {instantiate:.2} + \
         restore {restore:.1}; pause beyond the restore {:.1} ms (target under 20 ms)",
        total - restore
    );
    println!(
        "resident memory: {rss_start:.1} MiB before the swaps, {:.1} MiB after {swaps}",
        rss_mib()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    job.join().unwrap().expect("bench job");
}

/// Wait until the job's endpoint answers and it has read `keys` records.
fn wait_for_keys(run_dir: &Path, job: &str, keys: u64) -> Endpoint {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "the job did not read its input");
        if let Ok(e) = find_in(run_dir, job)
            && let Ok((200, body)) = e.request("GET", "/status")
        {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["records_read"].as_u64().unwrap_or(0) >= keys {
                // Let the last batches reach the plugin.
                std::thread::sleep(Duration::from_millis(200));
                return e;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until swap `seq` is promoted or rolled back.
fn wait_outcome(endpoint: &Endpoint, seq: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, body) = endpoint.request("GET", "/status").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(r) = v["swaps"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["seq"] == seq))
            && matches!(r["outcome"].as_str(), Some("promoted" | "rolled_back"))
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "swap {seq} has no outcome");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// This process's resident memory (Linux), MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
