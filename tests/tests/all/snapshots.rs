//! Chunked snapshots: a checkpoint that was written out in chunks while the
//! stream went on and kept changing the state holds the state as of its
//! barrier, key by key, and restores to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir::checkpoint::manifest;
use weir::checkpoint::store::{StateStore, StoreSpec};
use weir::config::CheckpointPlan;
use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, load_for_plan, run};
use weir::plugin::{PluginInstance, WeirEngine};
use weir_tests::{artifacts, state_machine_plan};

/// Per address, the state-machine state (its index: 0 INITIAL, 1 W, 2 X,
/// 3 Y, 4 Z) after the first `upto` bytes of `file`, computed without Weir.
/// Addresses in INITIAL (or back there after TERMINAL) have no state.
fn states_after(file: &Path, upto: u64) -> BTreeMap<Vec<u8>, u8> {
    let bytes = std::fs::read(file).unwrap();
    let mut states = BTreeMap::new();
    for line in bytes[..upto as usize].split(|&b| b == b'\n') {
        let mut cols = line.split(|&b| b == b',');
        let (Some(address), Some(&[event])) = (cols.next(), cols.next()) else {
            continue;
        };
        let current = states.get(address).copied().unwrap_or(0u8);
        let next = match (current, event) {
            (0, b'a') => Some(1),
            (0, b'c') => Some(2),
            (1, b'b') | (2, b'b') => Some(3),
            (2, b'd') | (3, b'e') => Some(4),
            (4, b'g') => Some(0),
            _ => None,
        };
        match next {
            Some(0) => {
                states.remove(address);
            }
            Some(s) => {
                states.insert(address.to_vec(), s);
            }
            None => {}
        }
    }
    states
}

/// The keys and states in a state-machine snapshot (a keyed state
/// envelope whose values are one postcard enum index each).
fn decode(blob: &[u8]) -> BTreeMap<Vec<u8>, u8> {
    let env = weir_guest::envelope::Envelope::parse(blob).expect("a state envelope");
    let mut out = BTreeMap::new();
    for entry in env.entries() {
        let (key, value) = entry.expect("an entry");
        assert_eq!(value.len(), 1, "one postcard byte per state");
        assert!(
            out.insert(key.to_vec(), value[0]).is_none(),
            "key {key:?} written twice"
        );
    }
    out
}

#[test]
fn a_checkpoint_written_while_keys_change_holds_the_state_at_its_barrier() {
    let root = tempfile::tempdir().unwrap();
    let events = root.path().join("events");
    generate(
        &events,
        &GenerateConfig {
            seed: 11,
            events: 600_000,
            max_address: 100_000,
            max_machines: 100_000,
            file_size: 1 << 30,
            ..GenerateConfig::default()
        },
    )
    .unwrap();
    let file = std::fs::read_dir(&events)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut plan = state_machine_plan(
        &events,
        &root.path().join("out"),
        1,
        artifacts::STATE_MACHINE,
    );
    plan.batch.max_records = 256;
    let spec = StoreSpec {
        url: format!("file://{}", root.path().join("state").display()),
        ..StoreSpec::default()
    };
    // Tiny chunks: a snapshot of the ~60k live keys takes hundreds of
    // chunks, one between two batches, while those batches change keys.
    plan.checkpoint = Some(CheckpointPlan {
        store: spec.clone(),
        interval: Some(Duration::from_millis(30)),
        retain: 10_000,
        savepoint_every_event_time_ms: None,
        snapshot_chunk_bytes: Some(512),
    });
    let report = run(&plan, RunOptions::default()).expect("job");
    let during: u64 = report
        .tasks
        .iter()
        .map(|t| t.batches_during_snapshots)
        .sum();
    let chunks: u64 = report.tasks.iter().map(|t| t.snapshot_chunks).sum();
    assert!(
        during >= 10,
        "batches must run while snapshots are written out ({during} did, in {chunks} chunks)"
    );

    let store = StateStore::open(&spec, root.path()).unwrap();
    let found = manifest::list(&store, &plan.name).unwrap();
    let checkpoints: Vec<_> = found
        .iter()
        .filter(|f| f.manifest.kind == manifest::Kind::Checkpoint)
        .collect();
    assert!(checkpoints.len() >= 3, "{} checkpoints", checkpoints.len());
    let engine = WeirEngine::new(plan.engine.clone()).unwrap();
    let loaded = engine
        .load_file("state-machine", Path::new(artifacts::STATE_MACHINE))
        .unwrap();
    let mut compared = 0;
    for f in checkpoints {
        let position = &f.manifest.source.position;
        let offset = position["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("a file offset in {position}"));
        if offset == 0 {
            continue;
        }
        let expected = states_after(&file, offset);
        let url = format!("{}/{}", store.url().trim_end_matches('/'), f.folder);
        let restored = load_for_plan(&store, &plan, &url).expect("the checkpoint loads");
        let op = &restored.partitions[0].operators[0];
        let written = decode(&op.state);
        assert_eq!(
            written.len(),
            expected.len(),
            "checkpoint {}: live keys at the barrier",
            f.manifest.id
        );
        for (key, state) in &expected {
            assert_eq!(
                written.get(key),
                Some(state),
                "checkpoint {}: key {}",
                f.manifest.id,
                String::from_utf8_lossy(key)
            );
        }
        // Restored into a fresh instance, the plugin holds the same state.
        let mut instance = PluginInstance::new(&engine, &loaded, 0).unwrap();
        instance.restore(&op.state, op.state_version).unwrap();
        assert_eq!(
            decode(&instance.snapshot().unwrap()),
            expected,
            "checkpoint {} restored",
            f.manifest.id
        );
        compared += 1;
    }
    assert!(compared >= 3, "{compared} checkpoints compared");
}
