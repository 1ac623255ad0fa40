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
