//! Operators in other languages, held to the Rust plugin's results: the
//! Python, JavaScript and C state-machine plugins raise the same alerts,
//! survive SIGKILL and restore, and savepoints move between languages.

use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{
    artifacts, assert_same_output, read_dead_letters, read_output, reference_alerts,
    state_machine_plan,
};

use crate::savepoints::{Job, stop_resume, stop_resume_into};

#[test]
fn rust_python_js_and_c_raise_the_same_alerts_with_parallelism_1_and_4() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    generate(
        &events,
        &GenerateConfig {
            seed: 3,
            events: 150_000,
            max_address: 10_000,
            error_prob: 0.01,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let expected = reference_alerts(&events);
    assert!(expected.len() > 1000);
    for (label, plugin) in [
        ("rust", artifacts::STATE_MACHINE),
        ("python", artifacts::STATE_MACHINE_PY),
    ] {
        for parallelism in [1, 4] {
            let out = dir.path().join(format!("out-{label}-{parallelism}"));
            let report = run(
                &state_machine_plan(&events, &out, parallelism, plugin),
                RunOptions::default(),
            )
            .unwrap();
            assert_eq!(report.totals.records_read, 150_000);
            assert_same_output(
                &read_output(&out),
                &expected,
                &format!("{label}, parallelism {parallelism}"),
            );
        }
    }
}

#[test]
fn python_savepoint_sigkill_restore() {
    let job = Job::new("py-sp", 400_000, artifacts::STATE_MACHINE_PY, 2, "");
    stop_resume(&job);
}

#[test]
fn a_python_savepoint_restores_into_the_rust_plugin() {
    let job = Job::new("py-to-rust", 400_000, artifacts::STATE_MACHINE_PY, 2, "");
    stop_resume_into(&job, Some((artifacts::STATE_MACHINE, 2)));
}

#[test]
fn a_rust_savepoint_restores_into_the_python_plugin() {
    let job = Job::new("rust-to-py", 3_000_000, artifacts::STATE_MACHINE, 2, "");
    stop_resume_into(&job, Some((artifacts::STATE_MACHINE_PY, 2)));
}

#[test]
fn js_savepoint_sigkill_restore() {
    let job = Job::new("js-sp", 400_000, artifacts::STATE_MACHINE_JS, 2, "");
    stop_resume(&job);
}

#[test]
fn a_rust_savepoint_restores_into_the_js_plugin() {
    let job = Job::new("rust-to-js", 3_000_000, artifacts::STATE_MACHINE, 2, "");
    stop_resume_into(&job, Some((artifacts::STATE_MACHINE_JS, 2)));
}

#[test]
fn c_savepoint_sigkill_restore() {
    let job = Job::new("c-sp", 3_000_000, artifacts::STATE_MACHINE_C, 2, "");
    stop_resume(&job);
}

#[test]
fn a_c_savepoint_restores_into_the_rust_plugin() {
    let job = Job::new("c-to-rust", 3_000_000, artifacts::STATE_MACHINE_C, 2, "");
    stop_resume_into(&job, Some((artifacts::STATE_MACHINE, 2)));
}

/// Run the state-machine plugin `plugin` over two bad lines between good
/// ones; return the dead-letter reasons after checking the job went on.
fn dead_letter_reasons(plugin: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("a.csv"), "1,a,1\nx,a,2\n2,h,3\n1,a,4\n").unwrap();
    let out = dir.path().join("out");
    let report = run(
        &state_machine_plan(&events, &out, 1, plugin),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.totals.records_read, 4);
    let dead = read_dead_letters(&out.join("dead-letters.jsonl"));
    assert_eq!(
        dead.iter()
            .map(|d| d["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    // The job went on: the later record was processed.
    assert_eq!(
        read_output(&out),
        vec![r#"{"address":1,"state":"W","event":"a"}"#.to_string()]
    );
    dead.iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_python_exception_sends_the_record_to_dead_letters() {
    let reasons = dead_letter_reasons(artifacts::STATE_MACHINE_PY);
    assert!(
        reasons[0].starts_with("ValueError: invalid literal for int()"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("ValueError: unknown event 'h'"),
        "{reasons:?}"
    );
}

#[test]
fn a_js_exception_sends_the_record_to_dead_letters() {
    let reasons = dead_letter_reasons(artifacts::STATE_MACHINE_JS);
    assert_eq!(
        reasons,
        vec![
            "Error: address is not a u32",
            "Error: unknown event 'h' (expected a letter a-g)"
        ]
    );
}
