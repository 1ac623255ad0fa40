//! Malformed input goes to the dead-letter output with a reason; every valid
//! line is still processed.

use weir::job::{RunOptions, run};
use weir_tests::{artifacts, read_dead_letters, read_output, reference_alerts, state_machine_plan};

#[test]
fn malformed_lines_become_dead_letters_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    // Valid lines interleaved with: an unterminated quote (bad CSV), bytes
    // that are not UTF-8, an unknown event letter, a bad address, a bad
    // timestamp and a missing column.
    let mut a: Vec<u8> = Vec::new();
    a.extend_from_slice(b"1,a,10\n1,a,11\n\"2,c,12\n2,c,13\n");
    a.extend_from_slice(b"3,\xff\xfe,14\n3,a,15\n");
    std::fs::write(events.join("a.csv"), &a).unwrap();
    std::fs::write(
        events.join("b.csv"),
        b"1,b,16\n4,h,17\nx,a,18\n5,a,later\n6\n2,d,19\n2,d,20\n3,g,21",
    )
    .unwrap();

    for parallelism in [1, 3] {
        let out = dir.path().join(format!("out-{parallelism}"));
        let plan = state_machine_plan(&events, &out, parallelism, artifacts::STATE_MACHINE);
        let report = run(&plan, RunOptions::default()).unwrap();
        let dead = read_dead_letters(&out.join("dead-letters.jsonl"));
        let reasons: Vec<(String, u64, String)> = dead
            .iter()
            .map(|d| {
                let file = d["file"].as_str().unwrap();
                let name = std::path::Path::new(file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (
                    name,
                    d["line"].as_u64().unwrap(),
                    d["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let has = |file: &str, line: u64, words: &str| {
            assert!(
                reasons
                    .iter()
                    .any(|(f, l, r)| f == file && *l == line && r.contains(words)),
                "no dead letter for {file}:{line} with {words:?} in {reasons:#?}"
            )
        };
        has("a.csv", 3, "unterminated quoted field");
        has("a.csv", 5, "UTF-8");
        has("b.csv", 2, "unknown event");
        has("b.csv", 3, "not a u32");
        has("b.csv", 4, "timestamp column 2");
        has("b.csv", 5, "missing");
        assert_eq!(dead.len(), 6, "{reasons:#?}");
        assert_eq!(report.dead_letters, 6);
        // The raw bytes of the non-UTF-8 line are kept.
        let raw = dead
            .iter()
            .find(|d| d["value_base64"].is_string())
            .expect("raw bytes kept");
        assert_eq!(raw["value_base64"], "Myz//iwxNA==");
        // Operator rejections say which operator and carry the key.
        let rejected = dead.iter().find(|d| d["stage"] == "operator").unwrap();
        assert_eq!(rejected["operator"], "state-machine");
        // All valid lines went through: 14 lines, 4 refused by the source.
        assert_eq!(report.totals.records_read, 10);
        assert_eq!(report.totals.malformed, 4);
        let alerts = read_output(&out);
        assert_eq!(alerts, reference_alerts(&events));
        assert_eq!(
            alerts,
            vec![
                r#"{"address":1,"state":"W","event":"a"}"#,
                r#"{"address":2,"state":"Z","event":"d"}"#,
                r#"{"address":3,"state":"W","event":"g"}"#,
            ]
        );
    }
}
