//! Plugins that trap, loop forever or allocate without bound end the job
//! with an error naming the plugin; the host (this test process) lives on.

use std::path::Path;
use std::time::{Duration, Instant};

use weir::config::{EngineSettings, PluginSource};
use weir::job::{RunOptions, run};
use weir::{Error, Result};
use weir_tests::artifacts;

fn run_plugin(
    plugin: &str,
    name: &str,
    lines: &str,
    engine: EngineSettings,
) -> (Result<weir::job::JobReport>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("a.csv"), lines).unwrap();
    let mut plan = weir::demo::state_machine_plan(
        &events,
        &dir.path().join("out"),
        2,
        PluginSource::Path(Path::new(plugin).to_path_buf()),
    );
    plan.operators[0].name = name.into();
    plan.engine = engine;
    let start = Instant::now();
    (run(&plan, RunOptions::default()), start.elapsed())
}

fn plugin_error(r: Result<weir::job::JobReport>) -> (String, String) {
    match r {
        Err(Error::Plugin { plugin, detail, .. }) => (plugin, detail),
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[test]
fn a_trapping_plugin_fails_the_job_with_its_name() {
    let (r, _) = run_plugin(
        artifacts::TRAP,
        "trapper",
        "1,a,1\n2,boom,2\n3,a,3\n",
        EngineSettings::default(),
    );
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("plugin `trapper`"), "{msg}");
    assert!(
        msg.contains("process (batch"),
        "names the call and batch: {msg}"
    );
    let (plugin, detail) = plugin_error(Err(err));
    assert_eq!(plugin, "trapper");
    assert!(detail.contains("trapped"), "{detail}");
    assert!(
        detail.contains("this plugin traps on purpose"),
        "the panic message is kept: {detail}"
    );
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline() {
    let engine = EngineSettings {
        call_timeout: Duration::from_millis(300),
        ..EngineSettings::default()
    };
    let (r, took) = run_plugin(artifacts::LOOP, "spinner", "1,a,1\n2,spin,2\n", engine);
    let (plugin, detail) = plugin_error(r);
    assert_eq!(plugin, "spinner");
    assert!(detail.contains("deadline of 300 ms"), "{detail}");
    assert!(took < Duration::from_secs(20), "stopped, took {took:?}");
}

#[test]
fn a_plugin_allocating_without_bound_hits_its_memory_cap() {
    let engine = EngineSettings {
        memory_bytes: 64 << 20,
        ..EngineSettings::default()
    };
    let lines: String = (0..200).map(|i| format!("{i},a,{i}\n")).collect();
    let (r, _) = run_plugin(artifacts::HOG, "hog", &lines, engine);
    let (plugin, detail) = plugin_error(r);
    assert_eq!(plugin, "hog");
    assert!(detail.contains("memory cap of 64 MiB"), "{detail}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_the_plugin_name() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm not really").unwrap();
    let (r, _) = run_plugin(
        bogus.to_str().unwrap(),
        "bogus",
        "1,a,1\n",
        EngineSettings::default(),
    );
    match r {
        Err(e @ Error::PluginLoad { .. }) => {
            assert!(e.to_string().contains("plugin `bogus`"), "{e}")
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}
