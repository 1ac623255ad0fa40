//! The flagship job: generated events through the state-machine plugin.

use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{artifacts, read_output, reference_alerts, state_machine_plan};

#[test]
fn parallelism_1_and_4_raise_the_alerts_of_a_sequential_dfa() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let written = generate(
        &events,
        &GenerateConfig {
            seed: 7,
            events: 400_000,
            max_address: 20_000,
            error_prob: 0.01,
            file_size: 1 << 20,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    assert!(written.files.len() > 3, "several files, read as one stream");
    let expected = reference_alerts(&events);
    assert!(
        expected.len() as u64 >= written.injected_errors && written.injected_errors > 1000,
        "the generator injected {} errors, the DFA found {} alerts",
        written.injected_errors,
        expected.len()
    );

    for parallelism in [1, 4] {
        let out = dir.path().join(format!("out-{parallelism}"));
        let plan = state_machine_plan(&events, &out, parallelism, artifacts::STATE_MACHINE);
        let report = run(&plan, RunOptions::default()).unwrap();
        assert_eq!(report.totals.records_read, 400_000);
        assert_eq!(report.dead_letters, 0);
        assert_eq!(report.tasks.len(), parallelism);
        if parallelism > 1 {
            assert!(
                report.tasks.iter().all(|t| t.records_in > 0),
                "every task got records"
            );
        }
        let alerts = read_output(&out);
        assert_eq!(alerts.len(), expected.len(), "parallelism {parallelism}");
        assert!(
            alerts == expected,
            "parallelism {parallelism}: alerts differ from the reference DFA"
        );
    }
}

#[test]
fn keys_are_routed_with_kafkas_partitioner() {
    // Each task's part file holds only addresses that murmur2 assigns to it.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    generate(
        &events,
        &GenerateConfig {
            events: 50_000,
            error_prob: 0.05,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let out = dir.path().join("out");
    run(
        &state_machine_plan(&events, &out, 3, artifacts::STATE_MACHINE),
        RunOptions::default(),
    )
    .unwrap();
    let mut seen = 0;
    for task in 0..3u32 {
        let part =
            std::fs::read_to_string(out.join(format!("part-{task:04}-000000.jsonl"))).unwrap();
        for line in part.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let addr = v["address"].as_u64().unwrap().to_string();
            assert_eq!(
                weir::partition::partition_for_key(addr.as_bytes(), 3),
                task,
                "{line}"
            );
            seen += 1;
        }
    }
    assert!(seen > 100);
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let settings = weir::config::EngineSettings {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let path = std::path::Path::new(artifacts::STATE_MACHINE);
    let first = weir::plugin::WeirEngine::new(settings.clone())
        .unwrap()
        .load_file("sm", path)
        .unwrap();
    assert!(!first.from_cache);
    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(cached.len(), 1, "one compiled component in the cache");
    // A new engine (as after a restart) loads it without compiling.
    let second = weir::plugin::WeirEngine::new(settings)
        .unwrap()
        .load_file("sm", path)
        .unwrap();
    assert!(second.from_cache);
    assert_eq!(first.digest, second.digest);
}
