//! A newcomer's path: `weir new` projects that build as written and run,
//! a bounded job with savepoints only that still commits all its output,
//! what a run restores said at its start, the compiled-component cache
//! (a line before a first compile, its size bound, `weir cache clean`),
//! and `weir generate --kafka`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir::checkpoint::manifest::{self, Kind};
use weir::config::EngineSettings;
use weir::plugin::WeirEngine;
use weir_tests::{artifacts, assert_same_output, reference_alerts};

use crate::savepoints::Job;

/// The `weir` binary as users build it (no failpoints).
fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir-plain"))
}

fn ok(out: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{err}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every line of the part files in `out`, sorted.
fn lines(out: &Path) -> Vec<String> {
    weir_tests::read_output(out)
}

#[test]
fn weir_new_writes_a_project_that_builds_and_runs_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // One target folder for every run of this test: the SDK's dependencies
    // are compiled once, not at each run.
    let rust_target = workspace().join("target").join("weir-new");
    for (lang, name) in [
        ("rust", "count-rs"),
        ("c", "count-c"),
        ("python", "count-py"),
        ("js", "count-js"),
    ] {
        let project = dir.path().join(name);
        let said = weir()
            .args(["new", name, "--lang", lang, "--dir"])
            .arg(&project)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&said.stdout).into_owned();
        assert!(said.contains("build.sh"), "{lang}: {said}");
        let mut build = Command::new("bash");
        build
            .arg(project.join("build.sh"))
            .env("WEIR", env!("CARGO_BIN_EXE_weir-plain"))
            .env("CARGO_TARGET_DIR", &rust_target);
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
        ] {
            build.env_remove(var);
        }
        ok(build.output().unwrap(), &format!("{lang}: build.sh"));
        let component = project.join(format!("{name}.wasm"));
        let size = std::fs::metadata(&component).unwrap().len();
        if matches!(lang, "rust" | "c") {
            assert!(
                size < 200 << 10,
                "{lang}: a {size}-byte component (debug info stripped: under 200 KiB)"
            );
        }
        ok(
            weir()
                .arg("run")
                .arg(project.join("job.toml"))
                .env("WEIR_CACHE_DIR", &cache)
                .env("WEIR_RUN_DIR", dir.path().join("run"))
                .output()
                .unwrap(),
            &format!("{lang}: weir run"),
        );
        // sample.csv: alice 3 records, bob 2; one output per record.
        let mut want = vec![
            r#"{"count":1}"#,
            r#"{"count":1}"#,
            r#"{"count":2}"#,
            r#"{"count":2}"#,
            r#"{"count":3}"#,
        ];
        want.sort();
        assert_eq!(
            lines(&project.join("out")),
            want,
            "{lang}: the job's output"
        );
    }
    // A second `weir new` into the same folder is refused, nothing written.
    let again = weir()
        .args(["new", "count-rs", "--lang", "rust", "--dir"])
        .arg(dir.path().join("count-rs"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{again:?}"
    );
}

#[test]
fn a_bounded_job_with_savepoints_only_commits_its_output_with_a_final_checkpoint() {
    let job = Job::new(
        "final-cp",
        20_000,
        artifacts::STATE_MACHINE,
        2,
        "[checkpoints]\ninterval_ms = 0\n",
    );
    let said = job.run_ok(&["run", job.file().to_str().unwrap()]);
    let all = manifest::list(&job.store(), &job.name).unwrap();
    assert_eq!(all.len(), 1, "one checkpoint at the end: {said}");
    assert_eq!(all[0].manifest.kind, Kind::Checkpoint);
    assert!(said.contains(" 1 checkpoints, 0 savepoints,"), "{said}");
    // Everything the job wrote is committed (visible), exactly once.
    let expected = reference_alerts(&job.root.join("events"));
    assert_same_output(&job.output(), &expected, "committed output");
}

#[test]
fn a_run_says_what_it_restores_before_it_reads() {
    let job = Job::new(
        "says-restore",
        20_000,
        artifacts::STATE_MACHINE,
        1,
        "[checkpoints]\ninterval_ms = 0\n",
    );
    job.run_ok(&["run", job.file().to_str().unwrap()]);
    let out = job
        .weir()
        .env("WEIR_LOG", "info")
        .args(["run", job.file().to_str().unwrap()])
        .output()
        .unwrap();
    let err = ok(out, "second run");
    let line = err
        .lines()
        .find(|l| l.contains("restoring job `says-restore` from checkpoint"))
        .unwrap_or_else(|| panic!("no restore line: {err}"));
    for part in [
        "events-000000.csv byte",
        "operators: op plugin ",
        "state v",
        "written by weir ",
        "WIT 0.2.0",
        "1 partitions",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("{s:?} in {err}"));
    assert!(
        at("restoring job") < at("restored from"),
        "said at the start, not only at the end: {err}"
    );
}

fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_cache_keeps_to_its_bound_and_cache_clean_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let load = |plugin: &Path, max: u64| {
        WeirEngine::new(EngineSettings {
            cache_dir: Some(cache.clone()),
            cache_max_bytes: max,
            ..Default::default()
        })
        .unwrap()
        .load_file("p", plugin)
        .unwrap()
        .from_cache
    };
    let a = weir_tests::state_machine_variant(dir.path(), "a");
    let b = weir_tests::state_machine_variant(dir.path(), "b");
    let c = weir_tests::state_machine_variant(dir.path(), "c");
    assert!(!load(&a, u64::MAX));
    let one = std::fs::metadata(&cache_entries(&cache)[0]).unwrap().len();
    // Room for two entries: a, b fit; c evicts the one used least recently.
    let bound = one * 2 + one / 2;
    assert!(!load(&b, bound));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        load(&a, bound),
        "a is cached (and now used more recently than b)"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!load(&c, bound));
    assert_eq!(cache_entries(&cache).len(), 2, "within the bound");
    assert!(load(&a, bound), "a, used recently, was kept");
    assert!(load(&c, bound), "c, just written, was kept");
    assert!(!load(&b, bound), "b, used least recently, was removed");

    // A first compile says so before it starts; a cached load does not.
    let job = Job::new("cache-line", 1_000, artifacts::STATE_MACHINE, 1, "");
    let fresh = dir.path().join("fresh-cache");
    let run = |what: &str| {
        ok(
            job.weir()
                .env("WEIR_LOG", "info")
                .env("WEIR_CACHE_DIR", &fresh)
                .args(["run", "--fresh", job.file().to_str().unwrap()])
                .output()
                .unwrap(),
            what,
        )
    };
    let first = run("first run");
    assert!(
        first.contains("compiling plugin `op`") && first.contains("cached for later runs in"),
        "{first}"
    );
    let second = run("second run");
    assert!(!second.contains("compiling plugin"), "{second}");

    // `weir cache clean` removes every entry, and only entries.
    std::fs::write(cache.join("notes.txt"), "mine").unwrap();
    let said = weir()
        .args(["cache", "clean", "--dir"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(said.status.success(), "{said:?}");
    let said = String::from_utf8_lossy(&said.stdout).into_owned();
    assert!(said.contains("removed 2 compiled components"), "{said}");
    assert!(cache_entries(&cache).is_empty());
    assert!(cache.join("notes.txt").exists());
    let said = weir()
        .args(["cache", "clean"])
        .env("WEIR_CACHE_DIR", &fresh)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&said.stdout).contains("removed 1 compiled components"),
        "{said:?}"
    );
}

#[test]
fn weir_generate_produces_keyed_events_to_a_kafka_topic() {
    let topic = "newcomer-generate";
    weir_tests::kafka::create_topic(topic, 3);
    let said = weir()
        .args(["generate", "--kafka", &weir_tests::kafka::brokers()])
        .args(["--topic", topic, "--events", "5000", "--seed", "7"])
        .output()
        .unwrap();
    ok(said, "weir generate --kafka");
    let records = weir_tests::kafka::read_records(topic);
    assert_eq!(records.len(), 5000);
    // The same events as the files `weir generate --out` writes.
    let dir = tempfile::tempdir().unwrap();
    ok(
        weir()
            .args(["generate", "--events", "5000", "--seed", "7", "--out"])
            .arg(dir.path())
            .output()
            .unwrap(),
        "weir generate --out",
    );
    let mut from_files = weir_tests::csv_lines(dir.path());
    from_files.sort();
    let mut produced: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    produced.sort();
    assert_eq!(produced, from_files);
    for r in &records {
        let value = String::from_utf8_lossy(&r.value);
        let key = String::from_utf8_lossy(&r.key);
        assert_eq!(
            Some(&*key),
            value.split(',').next(),
            "keyed by address: {value}"
        );
    }
    // A topic that does not exist is refused with what to do.
    let missing = weir()
        .args(["generate", "--kafka", &weir_tests::kafka::brokers()])
        .args(["--topic", "newcomer-no-such-topic", "--events", "10"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("create it first"),
        "{missing:?}"
    );
}

#[test]
fn the_address_file_is_found_without_xdg_runtime_dir() {
    let job = Job::following("addr-file", "");
    let tmp = job.root.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // As on a host without XDG_RUNTIME_DIR: the run folder falls back to
    // the temporary directory, and `--addr-file` says where.
    let weir_here = || {
        let mut c = job.weir();
        c.env_remove("WEIR_RUN_DIR")
            .env_remove("XDG_RUNTIME_DIR")
            .env("TMPDIR", &tmp);
        c
    };
    let mut child = weir_here()
        .args(["run", job.file().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let said = weir_here()
        .args(["status", job.file().to_str().unwrap(), "--addr-file"])
        .output()
        .unwrap();
    let path = PathBuf::from(String::from_utf8_lossy(&said.stdout).trim());
    assert!(
        path.starts_with(&tmp),
        "{path:?} in the temporary directory"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{path:?} never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        ep["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{ep}"
    );
    assert!(ep["token"].as_str().is_some_and(|t| t.len() >= 32), "{ep}");
    ok(
        weir_here()
            .args(["stop", job.file().to_str().unwrap()])
            .output()
            .unwrap(),
        "weir stop",
    );
    assert!(child.wait().unwrap().success());
}
