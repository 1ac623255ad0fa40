//! The compiled-component cache holds native code run outside the sandbox:
//! a replaced entry must not be loaded, and a folder others could write to
//! (or a symbolic link) must not be used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use weir::config::EngineSettings;
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir::plugin::WeirEngine;
use weir_tests::{
    artifacts, assert_same_output, read_output, reference_alerts, state_machine_plan,
};

fn settings(cache: &Path) -> EngineSettings {
    EngineSettings {
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    }
}

/// Small state-machine input in `dir/events`, and the alerts it must raise.
fn events(dir: &Path) -> (PathBuf, Vec<String>) {
    let events = dir.join("events");
    generate(
        &events,
        &GenerateConfig {
            seed: 11,
            events: 20_000,
            error_prob: 0.05,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let expected = reference_alerts(&events);
    assert!(expected.len() > 50, "the input raises alerts");
    (events, expected)
}

/// Run the state-machine job with its compiled components cached in
/// `cache`; its sorted output.
fn run_job(events: &Path, out: &Path, cache: &Path) -> Vec<String> {
    let mut plan = state_machine_plan(events, out, 2, artifacts::STATE_MACHINE);
    plan.engine = settings(cache);
    let report = run(&plan, RunOptions::default()).unwrap();
    assert_eq!(report.totals.records_read, 20_000);
    read_output(out)
}

/// Load `plugin` with a new engine (as after a restart): whether the
/// compiled code came from the cache.
fn load_from_cache(cache: &Path, plugin: &str) -> bool {
    WeirEngine::new(settings(cache))
        .unwrap()
        .load_file("p", Path::new(plugin))
        .unwrap()
        .from_cache
}

/// The entries in the cache folder.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn the_entry(cache: &Path) -> PathBuf {
    let e = entries(cache);
    assert_eq!(e.len(), 1, "one entry in the cache: {e:?}");
    e.into_iter().next().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_replaced_cache_entry_is_not_loaded_and_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (events, expected) = events(dir.path());

    // First run: compiles and caches the state-machine plugin.
    let first = run_job(&events, &dir.path().join("out-1"), &cache);
    assert_same_output(&first, &expected, "first run");
    let entry = the_entry(&cache);
    assert_eq!(mode(&entry), 0o600, "entries are private");
    assert!(load_from_cache(&cache, artifacts::STATE_MACHINE));

    // The well-formed entry of another plugin, with its own valid digest.
    let other_cache = dir.path().join("other-cache");
    assert!(!load_from_cache(&other_cache, artifacts::NOOP));
    let noop_entry = std::fs::read(the_entry(&other_cache)).unwrap();

    let garbage = b"\x7fELF definitely not a compiled component".repeat(100);
    let mut truncated = std::fs::read(&entry).unwrap();
    truncated.truncate(truncated.len() / 2);
    let plants: [(&str, &[u8]); 3] = [
        ("another plugin's entry", &noop_entry),
        ("garbage", &garbage),
        ("a truncated entry", &truncated),
    ];
    for (i, (what, planted)) in plants.into_iter().enumerate() {
        std::fs::write(&entry, planted).unwrap();
        // The job does not run the planted code: same output as before.
        let out = dir.path().join(format!("out-planted-{i}"));
        let again = run_job(&events, &out, &cache);
        assert_same_output(&again, &first, what);
        // The entry was rewritten with the right digest: a restart loads it.
        assert_eq!(the_entry(&cache), entry, "{what}: no stray files");
        assert_ne!(std::fs::read(&entry).unwrap(), planted, "{what}");
        assert_eq!(mode(&entry), 0o600, "{what}");
        assert!(load_from_cache(&cache, artifacts::STATE_MACHINE), "{what}");

        // And loading directly reports it was not taken from the cache.
        std::fs::write(&entry, planted).unwrap();
        assert!(!load_from_cache(&cache, artifacts::STATE_MACHINE), "{what}");
        assert!(load_from_cache(&cache, artifacts::STATE_MACHINE), "{what}");
    }
}

#[test]
fn an_entry_without_a_digest_or_behind_a_symlink_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    assert!(!load_from_cache(&cache, artifacts::STATE_MACHINE));
    let entry = the_entry(&cache);
    let good = std::fs::read(&entry).unwrap();

    // An entry as an older version wrote it: the bare compiled component.
    let engine = WeirEngine::new(settings(&cache)).unwrap();
    let wasm = std::fs::read(artifacts::STATE_MACHINE).unwrap();
    let bare = engine.engine().precompile_component(&wasm).unwrap();
    std::fs::write(&entry, &bare).unwrap();
    assert!(!load_from_cache(&cache, artifacts::STATE_MACHINE));
    assert!(load_from_cache(&cache, artifacts::STATE_MACHINE));

    // A symbolic link to a valid entry is not followed.
    let elsewhere = dir.path().join("elsewhere.cwasm");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    assert!(!load_from_cache(&cache, artifacts::STATE_MACHINE));
    assert!(
        !std::fs::symlink_metadata(&entry)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced by a real entry"
    );
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        good,
        "link target untouched"
    );
    assert!(load_from_cache(&cache, artifacts::STATE_MACHINE));
}

#[test]
fn a_missing_cache_folder_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("a").join("b").join("cache");
    let engine = WeirEngine::new(settings(&cache)).unwrap();
    assert_eq!(engine.cache_dir(), Some(cache.as_path()));
    assert_eq!(mode(&cache), 0o700);
    engine
        .load_file("sm", Path::new(artifacts::STATE_MACHINE))
        .unwrap();
    assert_eq!(mode(&the_entry(&cache)), 0o600);
}

#[test]
fn a_world_writable_cache_folder_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (events, expected) = events(dir.path());
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();

    assert_eq!(WeirEngine::new(settings(&cache)).unwrap().cache_dir(), None);
    for i in 0..2 {
        let out = run_job(&events, &dir.path().join(format!("out-{i}")), &cache);
        assert_same_output(&out, &expected, "world-writable cache folder");
        assert!(!load_from_cache(&cache, artifacts::STATE_MACHINE));
    }
    assert!(entries(&cache).is_empty(), "nothing written into it");
    assert_eq!(mode(&cache), 0o777, "and it is left as it was");
}

#[test]
fn a_symlinked_cache_folder_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (events, expected) = events(dir.path());
    // A private folder, reached through a symbolic link.
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("cache");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    assert_eq!(WeirEngine::new(settings(&link)).unwrap().cache_dir(), None);
    for i in 0..2 {
        let out = run_job(&events, &dir.path().join(format!("out-{i}")), &link);
        assert_same_output(&out, &expected, "symlinked cache folder");
        assert!(!load_from_cache(&link, artifacts::STATE_MACHINE));
    }
    assert!(
        entries(&target).is_empty(),
        "nothing written into the target"
    );
}
