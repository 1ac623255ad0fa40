//! Benchmark of the state-machine job, file source to file sink, one task:
//! the Wasm plugin through the full host path, the same operator logic
//! (the SDK and its state map) compiled natively into the same harness, a
//! no-op Wasm plugin (the host path alone), and a plain native program with
//! a hash map and no Weir at all. Prints events/s and events per CPU-second
//! for 10k addresses (1k machines running: the easy case) and for 1M
//! addresses with as many machines running (about 550k live keys after 50M
//! events: the hard case).
//!
//! `cargo bench -p weir-tests --bench state_machine`
//! (`WEIR_BENCH_EVENTS` sets the event count, default 10 000 000;
//! `WEIR_BENCH_PARALLELISM` the task count, default 1.)

use std::sync::Arc;

use weir::config::PluginSource;
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, load_operators, run_with};
use weir::plugin::OperatorFactory;
use weir::plugin::WeirEngine;
use weir_tests::native::{NativeFactory, plain_state_machine};
use weir_tests::{artifacts, env_or};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special either: run a small smoke version unless benchmarking.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events = if benchmarking {
        env_or("WEIR_BENCH_EVENTS", 10_000_000)
    } else {
        50_000
    };
    let parallelism = env_or("WEIR_BENCH_PARALLELISM", 1) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "state-machine job, {events} events, parallelism {parallelism}, file source -> file sink"
    );
    println!(
        "{:<10} {:<22} {:>12} {:>16} {:>9} {:>8}",
        "addresses", "operator", "events/s", "events/CPU-s", "alerts", "wall s"
    );
    // The hard case keeps as many machines running as there are addresses
    // (about 550k live keys after 50M events); the easy one keeps 1k
    // machines over 10k addresses, so the state map fits in cache.
    for (addresses, machines) in [(10_000u32, 1_000usize), (1_000_000, 1_000_000)] {
        let events_dir = dir.path().join(format!("events-{addresses}"));
        generate(
            &events_dir,
            &GenerateConfig {
                seed: 1,
                events,
                max_address: addresses,
                max_machines: machines,
                file_size: 64 << 20,
                ..GenerateConfig::default()
            },
        )
        .expect("generating events");
        let out = dir.path().join("out");
        let engine = WeirEngine::new(Default::default()).expect("engine");
        let plan_for = |plugin: &str| {
            weir::demo::state_machine_plan(
                &events_dir,
                &out,
                parallelism,
                PluginSource::Path(plugin.into()),
            )
        };
        let wasm_plan = plan_for(artifacts::STATE_MACHINE);
        let wasm = load_operators(&engine, &wasm_plan).expect("loading plugin");
        let native: Vec<Arc<dyn OperatorFactory>> = vec![Arc::new(NativeFactory::<
            state_machine::StateMachine,
        >::new("state-machine"))];
        let noop_plan = plan_for(artifacts::NOOP);
        let noop = load_operators(&engine, &noop_plan).expect("loading plugin");

        // Warm the page cache once.
        run_with(&wasm_plan, &noop, RunOptions::default()).expect("warm-up");
        let mut results = Vec::new();
        for (label, factories) in [
            ("wasm (full host path)", &wasm),
            ("native SDK (same host)", &native),
            ("wasm no-op (host path)", &noop),
        ] {
            let best = (0..3)
                .map(|_| run_with(&wasm_plan, factories, RunOptions::default()).expect("bench run"))
                .max_by(|a, b| a.records_per_cpu_sec().total_cmp(&b.records_per_cpu_sec()))
                .expect("three runs");
            print_row(
                addresses,
                label,
                best.records_per_sec(),
                best.records_per_cpu_sec(),
                best.totals.emitted,
                best.elapsed.as_secs_f64(),
            );
            results.push(best);
        }
        let plain = (0..3)
            .map(|_| plain_state_machine(&events_dir, &dir.path().join("plain-out")))
            .max_by(|a, b| a.events_per_cpu_sec().total_cmp(&b.events_per_cpu_sec()))
            .expect("three runs");
        print_row(
            addresses,
            "plain native hash map",
            plain.events_per_sec(),
            plain.events_per_cpu_sec(),
            plain.alerts,
            plain.elapsed.as_secs_f64(),
        );
        println!(
            "{:<10} {} live keys at the end; wasm / plain map: {:.2}, wasm / native SDK: {:.2} (events/CPU-s)",
            "",
            plain.live_keys,
            results[0].records_per_cpu_sec() / plain.events_per_cpu_sec(),
            results[0].records_per_cpu_sec() / results[1].records_per_cpu_sec()
        );
        assert_eq!(
            results[0].totals.emitted, results[1].totals.emitted,
            "wasm and native agree"
        );
        assert_eq!(
            results[0].totals.emitted, plain.alerts,
            "wasm and the plain program agree"
        );
        std::fs::remove_dir_all(&events_dir).ok();
    }
    languages(if benchmarking { 1_000_000 } else { 20_000 });
}

/// One row per plugin language: events per CPU-second on the job (one
/// task), component size, cold start from the compiled-component cache
/// (engine, load, instantiate, init) and peak linear memory of an instance
/// that processed the same events.
fn languages(events: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let events_dir = dir.path().join("events");
    generate(
        &events_dir,
        &GenerateConfig {
            seed: 5,
            events,
            max_address: 10_000,
            ..GenerateConfig::default()
        },
    )
    .expect("generating events");
    println!();
    println!("plugin languages, {events} events, 10k addresses, one task");
    println!(
        "{:<10} {:>14} {:>12} {:>16} {:>14}",
        "language", "events/CPU-s", "size KiB", "cold start ms", "memory MiB"
    );
    for (label, plugin) in [
        ("rust", artifacts::STATE_MACHINE),
        ("python", artifacts::STATE_MACHINE_PY),
        ("javascript", artifacts::STATE_MACHINE_JS),
        ("c", artifacts::STATE_MACHINE_C),
        ("go", artifacts::STATE_MACHINE_GO),
    ] {
        let plan = weir::demo::state_machine_plan(
            &events_dir,
            &dir.path().join("out"),
            1,
            PluginSource::Path(plugin.into()),
        );
        // Warm the compiled-component cache, then time a cold start from it.
        WeirEngine::new(Default::default())
            .unwrap()
            .load_file(label, plugin.as_ref())
            .unwrap();
        let t = std::time::Instant::now();
        let engine = WeirEngine::new(Default::default()).unwrap();
        let loaded = engine.load_file(label, plugin.as_ref()).unwrap();
        assert!(loaded.from_cache);
        let mut instance = weir::plugin::PluginInstance::new(&engine, &loaded, 0).unwrap();
        instance.init(&[]).unwrap();
        let cold = t.elapsed();
        // Memory: the same events through one instance.
        let text = std::fs::read_to_string(
            std::fs::read_dir(&events_dir)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap();
        let mut batch = weir::batch::Batch::new();
        for line in text.lines() {
            batch.push(
                line.split(',').next().unwrap().as_bytes(),
                line.as_bytes(),
                0,
            );
            if batch.len() == 1024 {
                instance.process(&batch, 0).unwrap();
                batch.clear();
            }
        }
        let factories = load_operators(&engine, &plan).unwrap();
        let report = run_with(&plan, &factories, RunOptions::default()).expect("bench run");
        println!(
            "{:<10} {:>14.0} {:>12} {:>16.2} {:>14.1}",
            label,
            report.records_per_cpu_sec(),
            std::fs::metadata(plugin).unwrap().len() / 1024,
            cold.as_secs_f64() * 1000.0,
            instance.memory_peak() as f64 / (1 << 20) as f64
        );
    }
}

fn print_row(addresses: u32, label: &str, per_sec: f64, per_cpu_sec: f64, alerts: u64, wall: f64) {
    println!(
        "{:<10} {:<22} {:>12.0} {:>16.0} {:>9} {:>8.2}",
        addresses, label, per_sec, per_cpu_sec, alerts, wall
    );
}
