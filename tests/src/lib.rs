//! Shared helpers of Weir's end-to-end tests and benchmarks: the plugins
//! built from source, an independent implementation of the state-machine
//! DFA, and readers of a job's output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub mod kafka;
pub mod native;
pub mod stages;

use weir::config::{Plan, PluginSource};

/// Paths of the plugin components built by `build.rs`.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// Every line of the files in `dir`, files in name order.
pub fn csv_lines(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        lines.extend(
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    lines
}

/// The state-machine component with a custom section appended, written to
/// `dir`: the same code under another digest (a rebuild of the same logic).
pub fn state_machine_variant(dir: &Path, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(artifacts::STATE_MACHINE).unwrap();
    let name = b"weir-test-variant";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 size");
    bytes.push(0); // custom section
    bytes.push(payload.len() as u8);
    bytes.extend_from_slice(&payload);
    let path = dir.join(format!("state-machine-{tag}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A benchmark setting from the environment, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The state-machine job over `events` writing to `out`, with the plugin at
/// `plugin`.
pub fn state_machine_plan(events: &Path, out: &Path, parallelism: usize, plugin: &str) -> Plan {
    weir::demo::state_machine_plan(
        events,
        out,
        parallelism,
        PluginSource::Path(PathBuf::from(plugin)),
    )
}

/// The file source of `plan`, to change its settings.
pub fn file_source(plan: &mut Plan) -> &mut weir::config::FileSourceSpec {
    match &mut plan.source {
        weir::config::SourceSpec::Files(s) => s,
        other => panic!("not a file source: {other:?}"),
    }
}

/// The alerts the classic state-machine example raises for the CSV files in
/// `dir` (read in name order, sequentially), computed without Weir: a table
/// of valid (state, event) -> state, a map address -> state, TERMINAL
/// clears. Lines that are not `u32,letter[,..]` with a letter a-g are
/// skipped (they are dead letters).
pub fn reference_alerts(dir: &Path) -> Vec<String> {
    const VALID: &[(&str, char, &str)] = &[
        ("INITIAL", 'a', "W"),
        ("INITIAL", 'c', "X"),
        ("W", 'b', "Y"),
        ("X", 'b', "Y"),
        ("X", 'd', "Z"),
        ("Y", 'e', "Z"),
        ("Z", 'g', "TERMINAL"),
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    let mut state: HashMap<u32, &'static str> = HashMap::new();
    let mut alerts = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for line in bytes.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let mut cols = line.split(',');
            let (Some(addr), Some(ev)) = (cols.next(), cols.next()) else {
                continue;
            };
            let Ok(addr) = addr.parse::<u32>() else {
                continue;
            };
            let mut chars = ev.chars();
            let (Some(ev), None) = (chars.next(), chars.next()) else {
                continue;
            };
            if !('a'..='g').contains(&ev) {
                continue;
            }
            let current = state.get(&addr).copied().unwrap_or("INITIAL");
            match VALID.iter().find(|(s, e, _)| *s == current && *e == ev) {
                Some((_, _, "TERMINAL")) => {
                    state.remove(&addr);
                }
                Some((_, _, next)) => {
                    state.insert(addr, next);
                }
                None => alerts.push(format!(
                    r#"{{"address":{addr},"state":"{current}","event":"{ev}"}}"#
                )),
            }
        }
    }
    alerts.sort();
    alerts
}

/// Every line of every `part-*.jsonl` in `out`, sorted.
pub fn read_output(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            lines.extend(
                std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

/// Every dead letter in `path`, parsed.
pub fn read_dead_letters(path: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Assert two sorted outputs are equal, reporting counts and the first
/// difference rather than both lists.
pub fn assert_same_output(actual: &[String], expected: &[String], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: {} lines, expected {}; first difference at sorted line {first}: {:?} vs expected {:?}",
        actual.len(),
        expected.len(),
        actual.get(first),
        expected.get(first)
    );
}

/// Copy the files of `dir` under `url` (an object-store prefix, such as
/// the S3 test server's).
pub fn upload(dir: &Path, url: &str) {
    use weir::checkpoint::store::{StateStore, StoreSpec};
    let store = StateStore::open(
        &StoreSpec {
            url: url.to_string(),
            ..StoreSpec::default()
        },
        Path::new("."),
    )
    .unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        store
            .put(&name, bytes::Bytes::from(std::fs::read(&p).unwrap()))
            .unwrap();
    }
}
