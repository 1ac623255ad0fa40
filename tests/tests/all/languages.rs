//! Operators in other languages, held to the Rust plugin's results: the
//! Python, JavaScript and C state-machine plugins raise the same alerts,
//! survive SIGKILL and restore, and savepoints move between languages.

use weir::generate::{GenerateConfig, generate};
use weir::job::{RunOptions, run};
use weir_tests::{
    artifacts, assert_same_output, read_dead_letters, read_output, reference_alerts,
    state_machine_plan,
};

use weir::checkpoint::manifest;

use crate::savepoints::{Job, savepoint_then_kill, stop_resume};

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
fn js_savepoint_sigkill_restore() {
    let job = Job::new("js-sp", 400_000, artifacts::STATE_MACHINE_JS, 2, "");
    stop_resume(&job);
}

#[test]
fn c_savepoint_sigkill_restore() {
    let job = Job::new("c-sp", 3_000_000, artifacts::STATE_MACHINE_C, 2, "");
    stop_resume(&job);
}

/// A savepoint of the Rust plugin (a chunked snapshot) restores into the
/// same operator in another language (`via`, built against
/// weir:plugin@0.1.0: blocking snapshots); a savepoint that one takes
/// restores back into the Rust plugin. The three runs' committed output
/// equals one uninterrupted run.
pub(crate) fn rust_to_and_back(name: &str, via: &str) {
    let job = Job::new(name, 3_000_000, artifacts::STATE_MACHINE, 2, "");
    let expected = job.reference();
    savepoint_then_kill(&job);
    let file = job.file();
    let file = file.to_str().unwrap();

    job.write(via, 2, "");
    let mut child = job.spawn(Some("mid"));
    job.wait_running();
    let said = job.run_ok(&["savepoint", "trigger", file, "--name", "back"]);
    assert!(said.contains("\"name\":\"back\""), "{said}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let [mid, back] = ["mid", "back"].map(|n| {
        manifest::select(&job.store(), &job.name, n)
            .unwrap()
            .manifest
            .partitions[0]
            .operators[0]
            .plugin_digest
            .clone()
    });
    assert_ne!(
        mid, back,
        "`back` was written by the other language's plugin"
    );

    job.write(artifacts::STATE_MACHINE, 2, "");
    let said = job.run_ok(&["run", file, "--from-savepoint", "back"]);
    assert!(
        said.contains("restoring state into another plugin version"),
        "{said}"
    );
    assert_same_output(&job.output(), &expected, "output after both restores");
}

#[test]
fn a_rust_savepoint_restores_into_the_python_plugin_and_back() {
    rust_to_and_back("rust-py-rust", artifacts::STATE_MACHINE_PY);
}

#[test]
fn a_rust_savepoint_restores_into_the_js_plugin_and_back() {
    rust_to_and_back("rust-js-rust", artifacts::STATE_MACHINE_JS);
}

#[test]
fn a_rust_savepoint_restores_into_the_c_plugin_and_back() {
    rust_to_and_back("rust-c-rust", artifacts::STATE_MACHINE_C);
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

#[test]
fn a_c_rejection_sends_the_record_to_dead_letters() {
    // `1,a,1` takes the C plugin's one-word parse; the refused lines take
    // its general path, which words the reason.
    let reasons = dead_letter_reasons(artifacts::STATE_MACHINE_C);
    assert_eq!(
        reasons,
        vec![
            "address is not a u32",
            "unknown event (expected a letter a-g)"
        ]
    );
}

/// A state-machine state blob (envelope format 2, shape `shape`) with one
/// key whose value is `value`.
fn state_blob(shape: &str, value: &[u8]) -> Vec<u8> {
    let shape = weir_guest::envelope::Shape {
        name: shape,
        migrates_from: &[],
    };
    let mut w = weir_guest::envelope::Writer::new(1, &shape, b"", 0);
    w.entry(b"42", value);
    w.finish()
}

/// Restore `blob` (state version 1) into a fresh instance from `factory`.
fn restore_into(factory: &dyn weir::plugin::OperatorFactory, blob: &[u8]) -> Result<(), String> {
    let mut op = factory.create(0).unwrap();
    op.restore(blob, 1).map_err(|e| e.to_string())
}

/// Every language's state-machine plugin reads a state value exactly: a
/// value with a byte too many (another type's encoding) is refused and the
/// message names the key; state of another shape is refused naming both;
/// the value itself, under the shape every one of them declares, restores.
#[test]
fn every_sdk_refuses_trailing_bytes_in_a_value_and_state_of_another_shape() {
    for (label, plugin) in [
        ("rust", artifacts::STATE_MACHINE),
        ("python", artifacts::STATE_MACHINE_PY),
        ("js", artifacts::STATE_MACHINE_JS),
        ("c", artifacts::STATE_MACHINE_C),
        ("go", artifacts::STATE_MACHINE_GO),
    ] {
        use weir::plugin::{PluginLoader, WeirEngine};
        let cache = tempfile::tempdir().unwrap();
        let engine = WeirEngine::new(weir::config::EngineSettings {
            cache_dir: Some(cache.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let factory = engine
            .factory("op", &std::fs::read(plugin).unwrap(), &[])
            .unwrap();
        let plugin = factory.as_ref();
        restore_into(plugin, &state_blob("weir.state-machine", &[2]))
            .unwrap_or_else(|e| panic!("{label}: a good value: {e}"));
        let e = restore_into(plugin, &state_blob("weir.state-machine", &[2, 0]))
            .expect_err(&format!("{label}: a byte too many"));
        assert!(
            e.contains("42") && e.contains("does not decode"),
            "{label}: {e}"
        );
        let e = restore_into(plugin, &state_blob("()", &[]))
            .expect_err(&format!("{label}: another shape"));
        assert!(
            e.contains("`()`") && e.contains("`weir.state-machine`"),
            "{label}: {e}"
        );
    }
}

/// A blocking snapshot lists its keys in byte order (equal state, equal
/// bytes; `wit/STATE.md`). The C SDK sorts by each key's first 8 bytes and
/// reads the whole key only on a tie: keys that share those bytes, that are
/// prefixes of one another or that run past them must still come in order.
#[test]
fn the_c_plugins_snapshot_lists_its_keys_in_byte_order() {
    let keys = [
        "0000000013",
        "12345678",
        "1",
        "0000000012",
        "123456781",
        "00000000",
        "10",
        "4294967295",
        "123456780",
        "0",
        "1234567",
        "000000001",
        "12345679",
        "00",
    ];
    let engine = weir::plugin::WeirEngine::new(Default::default()).unwrap();
    let loaded = engine
        .load_file(
            "state-machine-c",
            std::path::Path::new(artifacts::STATE_MACHINE_C),
        )
        .unwrap();
    let mut instance = weir::plugin::PluginInstance::new(&engine, &loaded, 0).unwrap();
    instance.init(&[]).unwrap();
    let mut batch = weir::batch::Batch::new();
    for key in keys {
        batch.push(
            key.as_bytes(),
            format!("{key},a").as_bytes(),
            weir::batch::NO_TIMESTAMP,
        );
    }
    instance.process(&batch, weir::batch::NO_TIMESTAMP).unwrap();
    let blob = instance.snapshot().unwrap();
    let env = weir_guest::envelope::Envelope::parse(&blob).expect("a state envelope");
    let written: Vec<Vec<u8>> = env
        .entries()
        .map(|e| e.expect("an entry").0.to_vec())
        .collect();
    let mut sorted: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    sorted.sort();
    assert_eq!(written, sorted);
}

/// The C SDK's map when one record makes several calls on its key (it
/// remembers the record's last lookup, so a get then a put probes once):
/// every get sees the puts and deletions before it, in the same record and
/// across records, with other keys inserted and deleted in between (one of
/// them the record key's own prefix, passed at the same address), for
/// keys of 1 to 40 bytes (inline and not, sharing their first 8 bytes) and
/// values inline and not. A model map says what each get must see.
#[test]
fn the_c_sdks_map_answers_several_calls_in_one_record() {
    let keys = [
        "k",
        "ab",
        "abcdefg",
        "abcdefgh",
        "abcdefgh1",
        "abcdefgh12345678",
        "abcdefgh12345679",
        "abcdefgh123456789",
        "z123456789012345678901234567890123456789",
    ];
    let ops = [
        "gpg",
        "pg",
        "gdg",
        "pdg",
        "pdpg",
        "popg",
        "pgog",
        "gopqg",
        "pqdg",
        "opdgpg",
        "ppppppppppg",
        "dg",
        "g",
        "pgdgpgdg",
        "oqoqpg",
        "gsg",
        "gpsdg",
    ];
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    let mut lines = String::new();
    let mut model: std::collections::HashMap<String, String> = Default::default();
    let mut expected = Vec::new();
    // Three rounds over the keys, then, on keys whose prefix is no other
    // key's, a deletion, a get, the prefix's insertion and a get.
    let records = (0..3)
        .flat_map(|round| {
            keys.iter()
                .enumerate()
                .map(move |(i, key)| (*key, ops[(i * 7 + round * 5) % ops.len()]))
        })
        .chain([("ab", "dgsg"), ("abcdefg", "dgsg"), (keys[8], "dgsg")]);
    let mut t = 0;
    for (key, op) in records {
        t += 1;
        lines.push_str(&format!("{key},{op},{t}\n"));
        let other = format!("{key}~");
        for (j, c) in op.char_indices() {
            match c {
                'p' => {
                    model.insert(key.to_string(), op[..=j].to_string());
                }
                'd' => {
                    model.remove(key);
                }
                'o' => {
                    model.insert(other.clone(), "other".into());
                }
                'q' => {
                    model.remove(&other);
                }
                's' => {
                    model.insert(key[..key.len() - 1].to_string(), "short".into());
                }
                'g' => expected.push(format!(
                    "{key}={}",
                    model.get(key).map_or("-", String::as_str)
                )),
                _ => unreachable!(),
            }
        }
    }
    std::fs::write(events.join("a.csv"), lines).unwrap();
    let out = dir.path().join("out");
    let report = run(
        &state_machine_plan(&events, &out, 1, artifacts::STATE_OPS_C),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.totals.records_read, t);
    // `read_output` sorts the lines; each get's line names its key and the
    // ops that wrote the value it saw.
    expected.sort();
    assert_eq!(read_output(&out), expected);
}
