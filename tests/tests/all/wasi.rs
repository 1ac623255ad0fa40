//! Toolchains that need WASI (Go, Rust's `wasm32-wasip2`) under the host's
//! deterministic WASI profile: the Go state machine against the DFA and
//! across the language line through savepoints, byte-identical reruns and
//! restores, containment of stdout floods, `exit` and file access, and the
//! refusal of imports outside the profile.

use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{artifacts, assert_same_output, read_output, reference_alerts, state_machine_plan};

#[test]
fn the_go_state_machine_matches_the_dfa_with_parallelism_1_and_4() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    generate(
        &events,
        &GenerateConfig {
            seed: 5,
            events: 150_000,
            max_address: 10_000,
            error_prob: 0.01,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let expected = reference_alerts(&events);
    assert!(expected.len() > 1000);
    for parallelism in [1, 4] {
        let out = dir.path().join(format!("out-{parallelism}"));
        let report = run(
            &state_machine_plan(&events, &out, parallelism, artifacts::STATE_MACHINE_GO),
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(report.totals.records_read, 150_000);
        assert_same_output(
            &read_output(&out),
            &expected,
            &format!("go, parallelism {parallelism}"),
        );
    }
}
