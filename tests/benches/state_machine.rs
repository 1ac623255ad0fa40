//! Benchmark of the state-machine job, file source to file sink, one task,
//! against a plain native program, on two inputs of 1M addresses (by
//! default; `WEIR_BENCH_ADDRESSES`, below): the
//! generator's (about 550k live keys after 10M events) and addresses drawn
//! uniformly at random (the hard case: nearly every address live, every
//! access to the state a likely cache miss). Both are `address,event`
//! lines without timestamps, the input the issues' figures are measured
//! on (the job reads no event time).
//!
//! For each input it prints events per CPU-second and CPU ns per event of
//! the plain program (reads each file whole, splits lines with `memchr`,
//! parses the address to a `u32`, `FxHashMap<u32, State>` for the state,
//! a one-byte value stepped by the plugin's transition table; no
//! Weir), the Wasm state-machine plugin, the same operator compiled
//! natively into the same host, the no-op Wasm plugin (the host path) and a
//! native no-op operator (the host path without Wasm), with the ratios
//! against the targets; then a table of per-stage costs, each the
//! difference between two timed runs (see `weir_tests::stages`).
//! The variants run in turn, three rounds, best round of each kept.
//!
//! `cargo bench -p weir-tests --bench state_machine`
//! (`WEIR_BENCH_EVENTS` sets the event count, default 10 000 000;
//! `WEIR_BENCH_PARALLELISM` the task count, default 1;
//! `WEIR_BENCH_ADDRESSES` the address count of both inputs, default
//! 1 000 000: with 20 000 the state fits the core's L2 and no program waits
//! on memory, so the ratios show the compute alone (the per-language table
//! keeps its own 10k and 1M);
//! `WEIR_BENCH_LANGUAGES=0` skips the per-language table.)

use std::path::Path;
use std::sync::Arc;

use weir::batch::Batch;
use weir::config::KeySpec;
use weir::config::PluginSource;
use weir::generate::{GenerateConfig, generate};
use weir::job::{JobReport, RunOptions, load_operators, run_with};
use weir::plugin::{OperatorFactory, PluginInstance, WeirEngine};
use weir_guest::runtime::Runtime;
use weir_tests::native::NativeFactory;
use weir_tests::stages::{self, LoadChain, PlainStage, Timed};
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
    let addresses = u32::try_from(env_or("WEIR_BENCH_ADDRESSES", 1_000_000))
        .ok()
        .filter(|&n| n > 0)
        .expect("WEIR_BENCH_ADDRESSES is a count from 1 to 4294967295");
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "state-machine job, {events} events, parallelism {parallelism}, file source -> file sink; \
         CPU time of the whole process"
    );
    // Built once: a chain through 64 MiB takes a shuffle of 8M slots.
    let probes = [LoadChain::new(16), LoadChain::new(64)];
    for uniform in [false, true] {
        let events_dir = dir.path().join("events");
        std::fs::remove_dir_all(&events_dir).ok();
        let input = if uniform {
            stages::write_uniform_events(&events_dir, events, addresses, 7);
            format!("uniform random, {addresses} addresses")
        } else {
            stages::write_generated_events(
                &events_dir,
                &GenerateConfig {
                    seed: 1,
                    events,
                    max_address: addresses,
                    max_machines: addresses as usize,
                    file_size: 64 << 20,
                    ..GenerateConfig::default()
                },
            );
            format!("generator, {addresses} addresses and machines")
        };
        bench_input(
            &input,
            &events_dir,
            &dir.path().join("out"),
            parallelism,
            (&probes, if benchmarking { 2_000_000 } else { 20_000 }),
        );
    }
    if env_or("WEIR_BENCH_LANGUAGES", 1) != 0 {
        languages(if benchmarking { 1_000_000 } else { 20_000 });
    }
}

/// The demo's state-machine job over `address,event` lines: the key is
/// column 0, and there is no event time (the demo job reads it from
/// column 2).
fn untimed_plan(
    events_dir: &Path,
    out: &Path,
    parallelism: usize,
    plugin: &str,
) -> weir::config::Plan {
    let mut plan = weir::demo::state_machine_plan(
        events_dir,
        out,
        parallelism,
        PluginSource::Path(plugin.into()),
    );
    if let weir::config::SourceSpec::Files(files) = &mut plan.source {
        files.timestamp = KeySpec::None;
    }
    plan
}

/// The best run of a job (least CPU per event).
fn best_job(runs: &mut Vec<JobReport>, report: JobReport) {
    runs.push(report);
    runs.sort_by(|a, b| b.records_per_cpu_sec().total_cmp(&a.records_per_cpu_sec()));
    runs.truncate(1);
}

fn timed(report: &JobReport) -> Timed {
    Timed {
        events: report.totals.records_read,
        cpu: report.cpu,
        wall: report.elapsed,
    }
}

fn keep_best(best: &mut Option<Timed>, t: Timed) {
    if best.is_none_or(|b| t.ns_per_event() < b.ns_per_event()) {
        *best = Some(t);
    }
}

/// `probes`: memory-latency chains through 16 and 64 MiB, walked `steps`
/// loads before and after the rounds.
fn bench_input(
    input: &str,
    events_dir: &Path,
    out: &Path,
    parallelism: usize,
    (probes, steps): (&[LoadChain; 2], u64),
) {
    let files = stages::files_of(events_dir);
    let engine = WeirEngine::new(Default::default()).expect("engine");
    let plan_for = |plugin: &str| untimed_plan(events_dir, out, parallelism, plugin);
    let plan = plan_for(artifacts::STATE_MACHINE);
    let wasm = load_operators(&engine, &plan).expect("loading plugin");
    let native: Vec<Arc<dyn OperatorFactory>> = vec![Arc::new(NativeFactory::<
        state_machine::StateMachine,
    >::new("state-machine"))];
    let noop = load_operators(&engine, &plan_for(artifacts::NOOP)).expect("loading plugin");
    let native_noop: Vec<Arc<dyn OperatorFactory>> = vec![Arc::new(stages::NativeNoopFactory)];

    // Warm the page cache once.
    run_with(&plan, &noop, RunOptions::default()).expect("warm-up");
    // The whole programs, in turn, three rounds.
    let labels = [
        "wasm state machine (full host path)",
        "native SDK state machine (same host)",
        "wasm no-op (host path)",
        "native no-op (host path, no Wasm)",
    ];
    let mut jobs: Vec<Vec<JobReport>> = (0..labels.len()).map(|_| Vec::new()).collect();
    let (mut plain, mut plain_run) = (None, None);
    let latency = || (probes[0].latency_ns(steps), probes[1].latency_ns(steps));
    let latency_before = latency();
    let plain_out = out.with_extension("plain.jsonl");
    for _ in 0..3 {
        let mut run = None;
        keep_best(
            &mut plain,
            Timed::run(|| {
                let r = stages::plain_state_machine(&files, &plain_out);
                run = Some(r);
                r.events
            }),
        );
        plain_run = run;
        for (i, factories) in [&wasm, &native, &noop, &native_noop]
            .into_iter()
            .enumerate()
        {
            let report = run_with(&plan, factories, RunOptions::default()).expect("bench run");
            best_job(&mut jobs[i], report);
        }
    }
    let latency_after = latency();
    let plain = plain.expect("plain runs");
    let plain_run = plain_run.expect("plain run");
    let job = |i: usize| timed(&jobs[i][0]);
    println!();
    println!(
        "input: {input}; {} events, {} live keys at the end",
        plain_run.events, plain_run.live_keys
    );
    // The plain program's map is a cache miss per event: its speed, and so
    // every ratio below, moves with the machine's memory latency.
    println!(
        "memory latency (ns per dependent random load), before / after the rounds: \
         16 MiB {:.1} / {:.1}, 64 MiB {:.1} / {:.1}",
        latency_before.0, latency_after.0, latency_before.1, latency_after.1
    );
    println!(
        "{:<52} {:>13} {:>9} {:>9} {:>9}",
        "program", "events/CPU-s", "ns/event", "vs plain", "alerts"
    );
    let row = |label: &str, t: Timed, alerts: u64| {
        println!(
            "{:<52} {:>13.0} {:>9.1} {:>8.2}x {:>9}",
            label,
            t.per_cpu_sec(),
            t.ns_per_event(),
            t.per_cpu_sec() / plain.per_cpu_sec(),
            alerts
        );
    };
    row(
        "plain native (memchr, u32, FxHashMap<u32, State>)",
        plain,
        plain_run.alerts,
    );
    for (i, label) in labels.iter().enumerate() {
        row(label, job(i), jobs[i][0].totals.emitted);
    }
    let target = |what: &str, ratio: f64, want: f64| {
        println!(
            "target: {what} >= {want:.1}x plain: {ratio:.2}x, {}",
            if ratio >= want { "met" } else { "missed" }
        );
    };
    target(
        "wasm state machine",
        job(0).per_cpu_sec() / plain.per_cpu_sec(),
        0.7,
    );
    target(
        "wasm no-op host path",
        job(2).per_cpu_sec() / plain.per_cpu_sec(),
        3.0,
    );
    assert_eq!(
        jobs[0][0].totals.emitted, jobs[1][0].totals.emitted,
        "wasm and native agree"
    );
    assert_eq!(
        jobs[0][0].totals.emitted, plain_run.alerts,
        "wasm and the plain program agree"
    );
    stage_table(&plan, &engine, &files, (plain, job(2), job(3)));
}

/// Per-stage costs, each the difference of two timed runs over the input.
fn stage_table(
    plan: &weir::config::Plan,
    engine: &WeirEngine,
    files: &[std::path::PathBuf],
    jobs: (Timed, Timed, Timed),
) {
    let (plain, wasm_noop_job, native_noop_job) = jobs;
    // Records per batch in the batch-level runs: the router's default.
    let batch = weir::config::BatchSettings::default().max_records;
    let mut t: Vec<Option<Timed>> = vec![None; 12];
    let load = |path: &str| {
        let loaded = engine
            .load_file("bench", path.as_ref())
            .expect("load plugin");
        let mut i = PluginInstance::new(engine, &loaded, 0).expect("instance");
        i.init(&[]).expect("init");
        i
    };
    for _ in 0..3 {
        let runs: [&dyn Fn() -> u64; 12] = [
            &|| stages::plain_stage(files, PlainStage::Read),
            &|| stages::plain_stage(files, PlainStage::Split),
            &|| stages::plain_stage(files, PlainStage::Parse),
            &|| stages::host_source(plan, 1),
            &|| stages::host_source(plan, 4),
            &|| {
                stages::for_each_batch(files, batch, |b| {
                    std::hint::black_box(b.len());
                })
            },
            &|| stages::for_each_batch(files, batch, stages::parse_batch),
            &|| {
                let mut m = Default::default();
                stages::for_each_batch(files, batch, |b| {
                    stages::plain_map_batch(b, &mut m);
                })
            },
            &|| {
                let mut rt = Runtime::<stages::ParseOnly>::new();
                stages::for_each_batch(files, batch, |b| stages::sdk_batch(&mut rt, b))
            },
            &|| {
                let mut rt = Runtime::<state_machine::StateMachine>::new();
                stages::for_each_batch(files, batch, |b| stages::sdk_batch(&mut rt, b))
            },
            &|| {
                let mut i = load(artifacts::NOOP);
                stages::for_each_batch(files, batch, |b: &Batch| {
                    std::hint::black_box(i.process(b, 0).expect("process"));
                })
            },
            &|| {
                let mut i = load(artifacts::STATE_MACHINE);
                stages::for_each_batch(files, batch, |b: &Batch| {
                    std::hint::black_box(i.process(b, 0).expect("process"));
                })
            },
        ];
        for (slot, f) in t.iter_mut().zip(runs) {
            // The read stage counts bytes: every row is per input event.
            keep_best(slot, Timed::run(f));
        }
    }
    let ns = |i: usize| {
        let x = t[i].expect("timed");
        x.cpu.as_secs_f64() * 1e9 / plain.events as f64
    };
    let [
        read,
        split,
        parse,
        source,
        source_hash,
        build,
        parse_b,
        map_b,
        sdk_parse,
        sdk_sm,
        wasm_noop,
        wasm_sm,
    ] = std::array::from_fn(ns);
    let job = |x: Timed| x.ns_per_event();
    println!("per-stage CPU ns per event (each the difference of two timed runs):");
    let line = |stage: &str, v: f64, how: &str| println!("  {stage:<34} {v:>7.1}  {how}");
    line("read", read, "plain: read each file whole");
    line("split", split - read, "plain: + memchr line split");
    line(
        "parse",
        parse - split,
        "plain: + address to u32, event byte",
    );
    line(
        "map lookup/update, emit, sink",
        plain.ns_per_event() - parse,
        "plain program - parse (36k alerts of 10M: emit and sink are in here)",
    );
    line("= plain program", plain.ns_per_event(), "");
    line(
        "host: read, split, parse CSV",
        source,
        "host file source into a counting output",
    );
    line(
        "host: hash and route",
        source_hash - source,
        "+ murmur2 partition of each key (4 partitions; not paid at 1)",
    );
    line(
        "host: batch, hand-off, sink",
        job(native_noop_job) - source,
        "job with a native no-op operator - source alone",
    );
    line(
        "host: Wasm call",
        job(wasm_noop_job) - job(native_noop_job),
        "job with the wasm no-op - job with the native no-op",
    );
    line("= host path (wasm no-op job)", job(wasm_noop_job), "");
    line(
        "guest: batches built in process",
        build,
        "split + pack batches of the default size (subtracted below)",
    );
    line(
        "guest: parse (native)",
        parse_b - build,
        "state machine's parse_event per record",
    );
    line(
        "guest: SDK plumbing (native)",
        sdk_parse - parse_b,
        "SDK with a parse-only operator - the parse loop",
    );
    line(
        "guest: map lookup/update (SDK, native)",
        sdk_sm - sdk_parse,
        "SDK state machine - SDK parse-only",
    );
    line(
        "guest: map lookup/update (FxHashMap)",
        map_b - parse_b,
        "plain map loop - parse loop, for reference",
    );
    line(
        "guest: Wasm call (no-op plugin)",
        wasm_noop - build,
        "wasm no-op over the batches - building them",
    );
    line(
        "guest: SDK + map + parse in Wasm",
        wasm_sm - wasm_noop,
        "wasm state machine - wasm no-op",
    );
    line(
        "guest: the same natively",
        sdk_sm - build,
        "SDK state machine natively - building the batches",
    );
}

/// One row per plugin language: events per CPU-second on the job (one
/// task) over 10k addresses and over 1M (the generator's, with 1M machines:
/// the keyed state far larger than the caches), component size, cold start
/// from the compiled-component cache (engine, load, instantiate, init) and
/// peak linear memory of an instance that processed the 10k-address events.
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
    let wide_dir = dir.path().join("wide");
    stages::write_generated_events(
        &wide_dir,
        &GenerateConfig {
            seed: 5,
            events,
            max_address: 1_000_000,
            max_machines: 1_000_000,
            ..GenerateConfig::default()
        },
    );
    println!();
    println!("plugin languages, {events} events, one task");
    println!(
        "{:<10} {:>18} {:>18} {:>10} {:>14} {:>11}",
        "language",
        "ev/CPU-s 10k keys",
        "ev/CPU-s 1M addr",
        "size KiB",
        "cold start ms",
        "memory MiB"
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
        let wide_plan = untimed_plan(&wide_dir, &dir.path().join("wide-out"), 1, plugin);
        let wide = run_with(&wide_plan, &factories, RunOptions::default()).expect("bench run");
        assert_eq!(
            wide.totals.records_read, events,
            "{label}: every event of the 1M-address input read"
        );
        println!(
            "{:<10} {:>18.0} {:>18.0} {:>10} {:>14.2} {:>11.1}",
            label,
            report.records_per_cpu_sec(),
            wide.records_per_cpu_sec(),
            std::fs::metadata(plugin).unwrap().len() / 1024,
            cold.as_secs_f64() * 1000.0,
            instance.memory_peak() as f64 / (1 << 20) as f64
        );
    }
}
