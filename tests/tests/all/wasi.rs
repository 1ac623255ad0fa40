//! Toolchains that need WASI (Go, Rust's `wasm32-wasip2`) under the host's
//! deterministic WASI profile: the Go state machine against the DFA and
//! across the language line through savepoints, byte-identical reruns and
//! restores, containment of stdout floods, `exit` and file access, and the
//! refusal of imports outside the profile.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use weir::checkpoint::manifest;
use weir::config::JobFile;
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{
    artifacts, assert_same_output, read_output, reference_alerts, state_machine_plan,
};

use crate::savepoints::{Job, savepoint_then_kill, stop_resume, stop_resume_into};

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

/// A savepoint of the Go plugin restores into the Rust plugin, and the
/// output equals an uninterrupted run.
#[test]
fn a_go_savepoint_restores_into_the_rust_plugin() {
    let job = Job::new("go-to-rust", 1_000_000, artifacts::STATE_MACHINE_GO, 2, "");
    stop_resume_into(&job, Some((artifacts::STATE_MACHINE, 2)));
}

/// A savepoint of the Rust plugin restores into the Go plugin, and the
/// output equals an uninterrupted run.
#[test]
fn a_rust_savepoint_restores_into_the_go_plugin() {
    let job = Job::new("rust-to-go", 2_000_000, artifacts::STATE_MACHINE, 2, "");
    stop_resume_into(&job, Some((artifacts::STATE_MACHINE_GO, 2)));
}

/// A Rust savepoint restores into Go, whose savepoint restores back into
/// Rust; the output equals an uninterrupted run.
#[test]
fn a_rust_savepoint_restores_into_the_go_plugin_and_back() {
    crate::languages::rust_to_and_back("rust-go-rust", artifacts::STATE_MACHINE_GO);
}

/// The Go SDK's timers and config against the Rust SDK's: the session
/// plugin in Go writes the Rust one's output, also after a savepoint taken
/// with timers pending and a restore.
#[test]
fn go_timers_close_the_same_sessions_as_the_rust_plugin() {
    let job = Job::new("go-sessions", 1_000_000, artifacts::SESSION, 2, "");
    let expected = job.reference();
    assert!(expected.len() > 1000, "{} sessions", expected.len());
    // `reference` writes into one folder: empty it so that only the Go
    // plugin's output is compared.
    let reference_out = job.root.join("reference-out");
    std::fs::remove_dir_all(&reference_out).unwrap();
    job.write(artifacts::SESSION_GO, 2, "");
    assert_same_output(&job.reference(), &expected, "go sessions");
    std::fs::remove_dir_all(&reference_out).unwrap();
    stop_resume(&job);
}

/// An uninterrupted run of `job` under its own name (so its instances draw
/// the same random bytes as the job's), without checkpoints, into `out`.
fn run_same_job(job: &Job, out: &str) -> Vec<String> {
    let file = JobFile::load(&job.file()).unwrap();
    let mut plan = file.resolve(&job.name, &job.root).unwrap();
    let out = job.root.join(out);
    plan.sink = weir::config::SinkSpec::Files(weir::config::FileSinkSpec { dir: out.clone() });
    plan.control = None;
    plan.checkpoint = None;
    run(&plan, RunOptions::default()).unwrap();
    read_output(&out)
}

/// Two of the fields each probe plugin's output line ends with
/// (`salt,clock,count`): the salt and the clock.
fn salt_and_clock(line: &str) -> (String, String) {
    let fields: Vec<&str> = line.rsplitn(4, ',').collect();
    assert_eq!(fields.len(), 4, "{line}");
    (fields[2].to_string(), fields[1].to_string())
}

/// Two runs and a run restored from a savepoint give byte-identical output.
/// `salt_per_task`: the plugin's salt is one random draw per instance.
fn deterministic(name: &str, plugin: &str, salt_per_task: bool) {
    let job = Job::new(name, 300_000, plugin, 2, "");
    let first = run_same_job(&job, "first");
    let second = run_same_job(&job, "second");
    assert_eq!(first.len(), 300_000 - dead_letters(&job));
    assert_same_output(&second, &first, &format!("{name}: second run"));
    // The clock reads the Unix epoch.
    let (salts, clocks): (BTreeSet<_>, BTreeSet<_>) =
        first.iter().map(|l| salt_and_clock(l)).unzip();
    assert_eq!(
        clocks.into_iter().collect::<Vec<_>>(),
        vec!["0".to_string()]
    );
    if salt_per_task {
        // Drawn once per instance: one value per task.
        assert_eq!(salts.len(), 2, "{} salts", salts.len());
    }

    savepoint_then_kill(&job);
    let sp = manifest::select(&job.store(), &job.name, "mid")
        .unwrap()
        .manifest;
    assert!(
        sp.source.position["file"].is_string(),
        "the savepoint is in the middle of the input"
    );
    let said = job.run_ok(&[
        "run",
        job.file().to_str().unwrap(),
        "--from-savepoint",
        "mid",
    ]);
    assert!(said.contains("restored from"), "{said}");
    assert_same_output(&job.output(), &first, &format!("{name}: restored run"));
}

fn dead_letters(job: &Job) -> usize {
    weir_tests::read_dead_letters(&job.root.join("dead-letters.jsonl")).len()
}

#[test]
fn a_go_plugin_gives_byte_identical_output_twice_and_after_a_restore() {
    deterministic("det-go", artifacts::WASI_PROBE_GO, true);
}

#[test]
fn a_rust_wasip2_plugin_gives_byte_identical_output_twice_and_after_a_restore() {
    deterministic("det-wasip2", artifacts::WASIP2, false);
}

/// Run the Go probe plugin in `mode` as operator `name` over `lines` in a
/// `weir` process; return whether it succeeded, its log, the output and
/// the job folder.
fn probe(name: &str, mode: &str, lines: &str) -> (bool, String, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("events")).unwrap();
    std::fs::write(dir.path().join("events/a.csv"), lines).unwrap();
    let job = format!(
        r#"
name = "probe-{mode}"
parallelism = 1
[source]
type = "files"
path = "events"
format = "csv"
key_column = 0
timestamp_column = 2
[[operators]]
name = "{name}"
plugin = "{plugin}"
config = {{ mode = "{mode}" }}
[sink]
type = "file"
path = "out"
"#,
        plugin = artifacts::WASI_PROBE_GO
    );
    std::fs::write(dir.path().join("job.toml"), job).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-it"))
        .current_dir(dir.path())
        .env("WEIR_RUN_DIR", dir.path().join("run"))
        .env("WEIR_LOG", "warn")
        .arg("run")
        .arg(dir.path().join("job.toml"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let output = if dir.path().join("out").exists() {
        read_output(&dir.path().join("out"))
    } else {
        Vec::new()
    };
    (out.status.success(), log, output, dir)
}

fn events(n: usize) -> String {
    (0..n).map(|i| format!("{},a,{i}\n", i % 7)).collect()
}

#[test]
fn a_go_plugin_writing_100_mb_to_stdout_is_bounded_and_the_job_goes_on() {
    let (ok, log, output, _dir) = probe("flooder", "flood", &events(5000));
    assert!(ok, "{log}");
    assert_eq!(output.len(), 5000, "the output is intact");
    assert!(
        log.contains("plugin `flooder` (task 0) wrote") && log.contains("more to stdout"),
        "{log}"
    );
    let dropped: u64 = log
        .split("wrote ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(dropped > 99 << 20, "{dropped} bytes dropped");
    assert!(
        log.len() < 1 << 20,
        "the log stays small: {} bytes",
        log.len()
    );
}

#[test]
fn a_go_plugin_calling_exit_fails_its_job_with_its_name() {
    let mut lines = events(3000);
    lines.push_str("9,exit,3000\n");
    let (ok, log, output, _dir) = probe("quitter", "exit", &lines);
    assert!(!ok, "the job failed");
    assert!(
        log.contains("plugin `quitter`") && log.contains("called exit(1)"),
        "{log}"
    );
    // What was committed is whole records only.
    for line in &output {
        let (_, clock) = salt_and_clock(line);
        assert_eq!(clock, "0", "{line}");
    }
}

#[test]
fn a_go_plugin_opening_files_gets_none_and_the_log_says_so() {
    let (ok, log, output, dir) = probe("opener", "open", &events(2000));
    assert!(ok, "{log}");
    assert_eq!(output.len(), 2000, "the output is intact");
    assert!(log.contains("opener"), "{log}");
    assert!(
        log.contains("wasi-probe: reading /etc/passwd failed"),
        "{log}"
    );
    assert!(
        log.contains("wasi-probe: writing escape.txt failed"),
        "{log}"
    );
    assert!(!dir.path().join("escape.txt").exists());
    assert!(!Path::new("escape.txt").exists());
}

#[test]
fn a_plugin_importing_sockets_is_refused_before_any_output_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let events_dir = dir.path().join("events");
    std::fs::create_dir_all(&events_dir).unwrap();
    std::fs::write(events_dir.join("a.csv"), events(10)).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("part-earlier.jsonl"), "earlier\n").unwrap();
    let mut plan = state_machine_plan(&events_dir, &out, 1, artifacts::NET);
    plan.operators[0].name = "dialer".into();
    match run(&plan, RunOptions::default()) {
        Err(e @ weir::Error::PluginLoad { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("plugin `dialer`"), "{msg}");
            assert!(msg.contains("imports `wasi:sockets/"), "{msg}");
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["part-earlier.jsonl"]);
    assert_eq!(
        std::fs::read_to_string(out.join("part-earlier.jsonl")).unwrap(),
        "earlier\n"
    );
}

/// Only plugins that import WASI get it: the others keep the plain linker.
#[test]
fn wasi_is_linked_only_for_plugins_that_import_it() {
    let engine = weir::plugin::WeirEngine::new(Default::default()).unwrap();
    for (plugin, wasi) in [
        (artifacts::STATE_MACHINE, false),
        (artifacts::STATE_MACHINE_C, false),
        (artifacts::STATE_MACHINE_PY, false),
        (artifacts::STATE_MACHINE_GO, true),
        (artifacts::WASIP2, true),
    ] {
        let loaded = engine.load_file("op", Path::new(plugin)).unwrap();
        assert_eq!(loaded.wasi, wasi, "{plugin}");
    }
}
