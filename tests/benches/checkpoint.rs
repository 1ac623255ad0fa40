//! Benchmark of checkpoints with the state-machine plugin holding 1M and 10M
//! keys, on `file://` and S3: state bytes, task pause at the barrier (with
//! chunked snapshots: the freeze), the longest single chunk call (a short
//! pause between batches), time from barrier to completed checkpoint, upload speed against a plain
//! `object_store` put of the same bytes to the same store, and restore time
//! (fetch, verify, restore into a fresh plugin instance).
//!
//! `cargo bench -p weir-tests --bench checkpoint`
//! (`WEIR_CKPT_KEYS=1000000,10000000` by default; S3 rows need the S3 test
//! server: `eval "$(scripts/s3-server.sh start)"`.)

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir::checkpoint::store::{StateStore, StoreSpec};
use weir::config::{CheckpointPlan, EngineSettings, PluginSource};
use weir::job::{RunOptions, load_for_plan, run};
use weir::plugin::{PluginInstance, WeirEngine};
use weir::runtime::CheckpointStats;
use weir::runtime::Trigger;
use weir_tests::artifacts;

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let keys: Vec<u64> = if benchmarking {
        std::env::var("WEIR_CKPT_KEYS")
            .unwrap_or_else(|_| "1000000,10000000".into())
            .split(',')
            .filter_map(|k| k.trim().parse().ok())
            .collect()
    } else {
        vec![20_000]
    };
    let mut stores = vec![("file".to_string(), None)];
    match std::env::var("WEIR_S3_URL") {
        Ok(url) => stores.push(("s3".to_string(), Some(url))),
        Err(_) => println!(
            "note: WEIR_S3_URL is not set, so the S3 rows are not measured (see scripts/s3-server.sh)"
        ),
    }
    println!(
        "{:<6} {:>10} {:>12} {:>10} {:>10} {:>12} {:>11} {:>11} {:>11} {:>10}",
        "store",
        "keys",
        "state MiB",
        "pause ms",
        "chunk ms",
        "complete ms",
        "upload MB/s",
        "plain MB/s",
        "restore ms",
        "pause/100MB"
    );
    for &n in &keys {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events");
        std::fs::create_dir_all(&events).unwrap();
        // One `a` per address: every key ends in state W.
        let mut w =
            std::io::BufWriter::new(std::fs::File::create(events.join("keys.csv")).unwrap());
        for i in 0..n {
            writeln!(w, "{i},a,{}", 1_700_000_000_000u64 + i).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        for (label, url) in &stores {
            let url = match url {
                Some(u) => format!(
                    "{}/bench-{}-{n}",
                    u.trim_end_matches('/'),
                    std::process::id()
                ),
                None => format!(
                    "file://{}",
                    dir.path().join(format!("state-{label}")).display()
                ),
            };
            measure(label, n, &events, &dir.path().join("out"), &url);
        }
    }
}

fn measure(label: &str, n: u64, events: &std::path::Path, out: &std::path::Path, url: &str) {
    let mut plan = weir::demo::state_machine_plan(
        events,
        out,
        1,
        PluginSource::Path(artifacts::STATE_MACHINE.into()),
    );
    plan.name = format!("bench-{n}");
    weir_tests::file_source(&mut plan).follow = true;
    weir_tests::file_source(&mut plan).poll_interval = Duration::from_millis(5);
    plan.engine = EngineSettings {
        memory_bytes: 3 << 30,
        call_timeout: Duration::from_secs(120),
        ..EngineSettings::default()
    };
    let spec = StoreSpec {
        url: url.to_string(),
        ..Default::default()
    };
    plan.checkpoint = Some(CheckpointPlan {
        store: spec.clone(),
        interval: None,
        retain: 1,
        savepoint_every_event_time_ms: None,
        snapshot_chunk_bytes: Some(CheckpointPlan::DEFAULT_CHUNK_BYTES),
    });
    // Once every key is in, take a savepoint and stop.
    let (tx, rx) = crossbeam_channel::unbounded();
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    let mut sent = false;
    let progress = move |p: &weir::job::Progress| {
        if !sent && p.now.records_read >= n {
            sent = true;
            let _ = tx.send(Trigger::Savepoint {
                name: Some("bench".into()),
                stop: true,
                reply: Some(reply_tx.clone()),
            });
        }
    };
    let report = run(
        &plan,
        RunOptions {
            progress: Some(Box::new(progress)),
            progress_every: Some(Duration::from_millis(10)),
            triggers: Some(rx),
            ..RunOptions::default()
        },
    )
    .expect("bench job");
    let manifest = reply_rx
        .recv()
        .expect("savepoint reply")
        .expect("savepoint");
    let stats: CheckpointStats = report.checkpoints;
    let bytes = manifest.state_bytes();

    // The same bytes with a plain object_store put, to the same store.
    let store = StateStore::open(&spec, std::path::Path::new(".")).unwrap();
    let blob = Bytes::from(vec![7u8; bytes as usize]);
    let t = Instant::now();
    store
        .put(&format!("jobs/{}/plain-put", plan.name), blob)
        .unwrap();
    let plain = t.elapsed();

    // Restore: fetch and verify, then restore into a fresh instance.
    let t = Instant::now();
    let restored = load_for_plan(&store, &plan, "bench").expect("load");
    let engine = WeirEngine::new(plan.engine.clone()).unwrap();
    let loaded = engine
        .load_file(
            "state-machine",
            std::path::Path::new(artifacts::STATE_MACHINE),
        )
        .unwrap();
    let mut instance = PluginInstance::new(&engine, &loaded, 0).unwrap();
    let op = &restored.partitions[0].operators[0];
    instance
        .restore(&op.state, op.state_version)
        .expect("restore");
    let restore = t.elapsed();

    let mb = bytes as f64 / 1e6;
    println!(
        "{:<6} {:>10} {:>12.1} {:>10.1} {:>10.1} {:>12.1} {:>11.0} {:>11.0} {:>11.1} {:>10.1}",
        label,
        n,
        bytes as f64 / (1 << 20) as f64,
        ms(stats.last_max_pause),
        ms(stats.last_max_chunk_pause),
        ms(stats.last_duration),
        mb / stats.last_upload.as_secs_f64().max(1e-9),
        mb / plain.as_secs_f64().max(1e-9),
        ms(restore),
        ms(stats.last_max_pause) / (mb / 100.0).max(1e-9),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
