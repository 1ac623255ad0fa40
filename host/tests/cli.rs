//! The `weir` binary as a user runs it: generate events, run a job file.

use std::process::Command;

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_LOG", "warn")
        .output()
        .expect("running weir")
}

#[test]
fn generate_then_run_a_job_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let out = weir(&[
        "generate",
        "--out",
        events.to_str().unwrap(),
        "--events",
        "20000",
        "--error-prob",
        "0.05",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("wrote 20000 events ("), "{said}");

    std::fs::write(
        dir.path().join("state-machine.wasm"),
        weir::demo::STATE_MACHINE_WASM,
    )
    .unwrap();
    let job = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/state-machine.toml"
    ))
    .unwrap();
    let job = job.replace("../", "");
    std::fs::write(dir.path().join("job.toml"), job).unwrap();
    let out = weir(&["run", dir.path().join("job.toml").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("20000 records in"), "{stderr}");
    let alerts: usize = std::fs::read_dir(dir.path().join("weir-out/alerts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        // The sink's own record of what it wrote (`.weir-sink/`) is hidden.
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .inspect(|p| {
            assert!(
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("part-"),
                "{p:?}"
            )
        })
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    assert!(alerts > 0, "alerts were written");
    assert!(stderr.contains(&format!("{alerts} out")), "{stderr}");
}

#[test]
fn a_broken_job_file_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(&job, "parallelism = 2\nsorce = 1\n").unwrap();
    let out = weir(&["run", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sorce"), "{stderr}");
}

/// A generated input and the example job file in a new folder; the job
/// file's path.
fn example_job(dir: &std::path::Path) -> std::path::PathBuf {
    let events = dir.join("events");
    let out = weir(&[
        "generate",
        "--out",
        events.to_str().unwrap(),
        "--events",
        "5000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.join("state-machine.wasm"),
        weir::demo::STATE_MACHINE_WASM,
    )
    .unwrap();
    let job = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/state-machine.toml"
    ))
    .unwrap();
    std::fs::write(dir.join("job.toml"), job.replace("../", "")).unwrap();
    dir.join("job.toml")
}

/// `weir ARGS` at log level info with a run folder in `dir` (the other
/// tests run a job of the same name), its standard error captured (a pipe,
/// not a terminal).
fn logged(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_RUN_DIR", dir.join("run"))
        .env("WEIR_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .expect("running weir");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn logs_to_a_file_or_pipe_are_plain_text_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let job = example_job(dir.path());
    let job = job.to_str().unwrap();

    let (ok, stderr) = logged(dir.path(), &["run", job]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(" INFO "), "info lines are logged: {stderr}");
    assert!(!stderr.contains('\x1b'), "no colour codes: {stderr:?}");

    let (ok, stderr) = logged(dir.path(), &["--log-format", "json", "run", "--fresh", job]);
    assert!(ok, "{stderr}");
    let mut logs = 0;
    for line in stderr.lines() {
        // The summary at the end is for people, not a log line.
        if line.starts_with("job `") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}\n{stderr}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        logs += 1;
    }
    assert!(logs > 0, "log lines were written: {stderr}");
}
