//! Operating a running job as a person does: the status page in a real
//! browser (Debian's Chromium, headless), `/metrics` read by a strict
//! Prometheus text-format parser, `weir status` on a running and a stopped
//! job, and the owner's stop getting through while clients without the
//! token hold the endpoint's connections.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::runtime::control::{Endpoint, MAX_CONNECTIONS, MAX_WAITING};
use weir_tests::artifacts;

use crate::savepoints::Job;

/// A following job on `parallelism` threads (as many partitions), running,
/// with its endpoint.
fn start(name: &str, parallelism: usize) -> (Job, Child, Endpoint) {
    let job = Job::new(name, 10_000, artifacts::STATE_MACHINE, parallelism, "");
    job.set_follow(true);
    let child = job.spawn(None);
    job.wait_running();
    let ep = weir::runtime::control::find_in(&job.root.join("run"), &job.name).unwrap();
    (job, child, ep)
}

/// `/status`, parsed.
fn status(ep: &Endpoint) -> Value {
    let (code, body) = ep.request("GET", "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Wait until the job has read all `events` records and they went through
/// (its figures no longer move).
fn settled(ep: &Endpoint) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = status(ep);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = status(ep);
        if now["records_read"] == last["records_read"] && now["emitted"] == last["emitted"] {
            return now;
        }
        assert!(Instant::now() < deadline, "the job's figures keep moving");
        last = now;
    }
}

/// Stop with `weir stop`; the job must exit cleanly.
fn stop(job: &Job, mut child: Child) {
    job.run_ok(&["stop", job.file().to_str().unwrap()]);
    assert!(child.wait().unwrap().success());
}

/// Debian's Chromium; the test fails (never skips) without it.
fn chromium() -> &'static str {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "Chromium is missing: the status page tests need a real browser. Install it with \
         `apt-get install -y chromium` (Debian's package; `bash scripts/install-toolchains.sh` \
         does it)"
    );
    "chromium"
}

/// The DOM headless Chromium renders for `url` after its scripts ran for
/// a few seconds.
fn rendered(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=4000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with id `id` in `dom` (no nested elements).
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    dom[start..end].to_string()
}

/// `n` as the page writes it (en-US thousands separators).
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_status_page_shows_the_running_job_in_a_real_browser_and_nothing_without_the_token() {
    let (job, child, ep) = start("page-job", 2);
    job.run_ok(&[
        "savepoint",
        "trigger",
        job.file().to_str().unwrap(),
        "--name",
        "seen",
    ]);
    let s = settled(&ep);
    let last_id = s["last_checkpoint"]["id"].as_u64().unwrap();
    let partitions = s["partitions"].as_array().unwrap().len();
    assert_eq!(partitions, 2, "{s}");

    // The URL `weir run` prints: the token, exchanged for a cookie.
    let dom = rendered(&format!("http://{}/?token={}", ep.addr, ep.token));
    assert_eq!(text_of(&dom, "job"), "page-job", "{dom}");
    assert_eq!(text_of(&dom, "phase"), "running");
    assert_eq!(
        text_of(&dom, "records-read"),
        grouped(s["records_read"].as_u64().unwrap())
    );
    assert_eq!(
        text_of(&dom, "emitted"),
        grouped(s["emitted"].as_u64().unwrap())
    );
    assert_eq!(text_of(&dom, "last-checkpoint"), last_id.to_string());
    for p in 0..partitions {
        assert_eq!(
            dom.matches(&format!("data-partition=\"{p}\"")).count(),
            1,
            "one row for partition {p}"
        );
    }
    assert!(!dom.contains("data-partition=\"2\""), "{dom}");
    assert!(dom.contains("data-operator=\"op\""), "{dom}");
    assert!(
        dom.contains(
            "data-checkpoint=\"{last_id}\""
                .replace("{last_id}", &last_id.to_string())
                .as_str()
        )
    );
    // The session's own request also went through the page: the job ran on.
    let figures = [
        grouped(s["records_read"].as_u64().unwrap()),
        grouped(s["emitted"].as_u64().unwrap()),
    ];

    // Without the token: a page that says how to get in, and no figures.
    let dom = rendered(&format!("http://{}/", ep.addr));
    assert!(dom.contains("needs the job's token"), "{dom}");
    assert!(dom.contains("weir status"), "{dom}");
    for f in &figures {
        assert!(!dom.contains(f.as_str()), "{f} in {dom}");
    }
    assert!(
        !dom.contains("records-read") && !dom.contains("page-job"),
        "{dom}"
    );
    // A wrong token is no way in either.
    let dom = rendered(&format!("http://{}/?token={}", ep.addr, "0".repeat(64)));
    assert!(
        dom.contains("needs the job's token") && !dom.contains("records-read"),
        "{dom}"
    );
    stop(&job, child);
}

/// One metric family of the text format: its type, help and samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    /// `(sample name, labels, value)`.
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// Parse the Prometheus (OpenMetrics) text format strictly: every sample
/// belongs to the family declared before it with `# TYPE`, by the suffixes
/// its type allows; labels are `name="value"` with escapes; values are
/// numbers; families are declared once; the text ends with `# EOF`.
fn parse_metrics(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "text after # EOF: {line}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (what, name, value) = (
                parts.next().unwrap(),
                parts.next().expect("a metric name"),
                parts.next().unwrap_or(""),
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "name {name}"
            );
            match what {
                "TYPE" => {
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "info",
                            "summary",
                            "stateset",
                            "unknown",
                            "gaugehistogram"
                        ]
                        .contains(&value),
                        "type {value}"
                    );
                    let f = families.entry(name.to_string()).or_default();
                    assert!(f.kind.is_empty(), "family {name} declared twice");
                    f.kind = value.to_string();
                    current = Some(name.to_string());
                }
                "HELP" => families.entry(name.to_string()).or_default().help = value.to_string(),
                "UNIT" => assert!(name.ends_with(&format!("_{value}")), "{name} in {value}"),
                _ => panic!("unknown comment {line}"),
            }
            continue;
        }
        let family = current.clone().expect("a sample before any # TYPE");
        let (name_labels, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v} in {line}")),
        };
        let (name, labels) = match name_labels.split_once('{') {
            None => (name_labels, BTreeMap::new()),
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("closing brace"))),
        };
        let kind = families[&family].kind.clone();
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{family}{s}")),
            "sample {name} is not of {kind} family {family}"
        );
        families
            .get_mut(&family)
            .unwrap()
            .samples
            .push((name.to_string(), labels, value));
    }
    assert!(eof, "the exposition ends with # EOF");
    families
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label {name}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "label {name} twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn scrape(ep: &Endpoint) -> BTreeMap<String, Family> {
    let (code, body) = ep.request("GET", "/metrics").unwrap();
    assert_eq!(code, 200, "{body}");
    parse_metrics(&body)
}

#[test]
fn metrics_parse_as_the_text_format_with_their_types_and_counters_only_grow() {
    let (job, child, ep) = start("metrics-job", 2);
    job.run_ok(&[
        "savepoint",
        "trigger",
        job.file().to_str().unwrap(),
        "--name",
        "m1",
    ]);
    settled(&ep);
    let first = scrape(&ep);
    let want = [
        ("weir_records_read", "counter"),
        ("weir_read_bytes", "counter"),
        ("weir_records_emitted", "counter"),
        ("weir_dead_letters", "counter"),
        ("weir_partition_records_in", "counter"),
        ("weir_partition_records_out", "counter"),
        ("weir_operator_records_in", "counter"),
        ("weir_operator_records_out", "counter"),
        ("weir_operator_busy_seconds", "counter"),
        ("weir_batch_call_duration_seconds", "histogram"),
        ("weir_checkpoint_duration_seconds", "histogram"),
        ("weir_checkpoint_size_bytes", "histogram"),
        ("weir_watermark_lag_seconds", "gauge"),
        ("weir_swaps", "counter"),
        ("weir", "info"),
        ("weir_operator", "info"),
    ];
    for (name, kind) in want {
        let f = first
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {first:?}"));
        assert_eq!(f.kind, kind, "{name}");
        assert!(!f.help.is_empty(), "{name} has help");
    }
    let labels_of = |f: &str| -> Vec<BTreeMap<String, String>> {
        first[f].samples.iter().map(|s| s.1.clone()).collect()
    };
    assert!(
        labels_of("weir_dead_letters")
            .iter()
            .any(|l| l["stage"] == "operator")
    );
    let per_op = labels_of("weir_operator_records_in");
    assert_eq!(
        per_op.len(),
        2,
        "one per partition and operator: {per_op:?}"
    );
    assert!(per_op.iter().all(|l| l["operator"] == "op"));
    let info = &first["weir_operator"].samples[0].1;
    assert_eq!(info["operator"], "op");
    assert_eq!(info["job"], "metrics-job");
    let digest = status(&ep)["operators"][0].as_str().unwrap().to_string();
    assert_eq!(info["plugin_digest"], digest);
    assert_eq!(first["weir"].samples[0].1["version"], weir::VERSION);
    let read = |m: &BTreeMap<String, Family>| m["weir_records_read"].samples[0].2;
    assert_eq!(
        read(&first) as u64,
        status(&ep)["records_read"].as_u64().unwrap()
    );
    let count = |m: &BTreeMap<String, Family>, f: &str| {
        m[f].samples
            .iter()
            .find(|s| s.0.ends_with("_count"))
            .unwrap()
            .2
    };
    assert!(count(&first, "weir_checkpoint_duration_seconds") >= 1.0);
    assert!(count(&first, "weir_batch_call_duration_seconds") >= 1.0);

    // More input, another savepoint: counters grow, none shrinks.
    let events = job.root.join("events");
    let some = std::fs::read_dir(&events)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&some, events.join(".more.csv")).unwrap();
    std::fs::rename(events.join(".more.csv"), events.join("zz-more.csv")).unwrap();
    job.run_ok(&[
        "savepoint",
        "trigger",
        job.file().to_str().unwrap(),
        "--name",
        "m2",
    ]);
    settled(&ep);
    let second = scrape(&ep);
    assert!(read(&second) > read(&first), "records read grew");
    let mut compared = 0;
    for (name, f) in first
        .iter()
        .filter(|(_, f)| matches!(f.kind.as_str(), "counter" | "histogram"))
    {
        for (sample, labels, before) in &f.samples {
            if f.kind == "histogram" && sample.ends_with("_created") {
                continue;
            }
            let after = second[name]
                .samples
                .iter()
                .find(|s| &s.0 == sample && &s.1 == labels)
                .unwrap_or_else(|| panic!("{sample} {labels:?} gone"))
                .2;
            assert!(
                after >= *before,
                "{sample} {labels:?}: {before} then {after}"
            );
            compared += 1;
        }
    }
    assert!(compared > 30, "{compared}");
    assert!(
        count(&second, "weir_checkpoint_duration_seconds")
            > count(&first, "weir_checkpoint_duration_seconds")
    );
    stop(&job, child);
}

#[test]
fn forty_slow_clients_without_the_token_do_not_keep_the_owner_from_stopping_with_a_savepoint() {
    let (job, mut child, ep) = start("siege-job", 1);
    let done = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    const { assert!(40 > MAX_CONNECTIONS && 40 - MAX_CONNECTIONS <= MAX_WAITING) };
    // 40 clients, each renewing a connection that sends its head one byte
    // at a time (bounded: 30 s, 200 connections each).
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let (addr, done, opened) = (ep.addr.clone(), done.clone(), opened.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(30);
                for _ in 0..200 {
                    if done.load(Ordering::Relaxed) || Instant::now() > until {
                        return;
                    }
                    let Ok(mut c) = TcpStream::connect(&addr) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    c.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut buf = [0u8; 512];
                    for b in b"POST /stop HTTP/1.1\r\nHost: x\r\n" {
                        if done.load(Ordering::Relaxed) || c.write_all(&[*b]).is_err() {
                            break;
                        }
                        // Closed or answered: open another.
                        if c.read(&mut buf).is_ok() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(opened.load(Ordering::Relaxed) >= 40);
    // The owner's reads may be answered 503 meanwhile; its actions are
    // served.
    let started = Instant::now();
    let out = job
        .weir()
        .args([
            "stop",
            job.file().to_str().unwrap(),
            "--savepoint",
            "--name",
            "under-siege",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the owner's stop: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"name\":\"under-siege\""),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end under the siege"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    done.store(true, Ordering::Relaxed);
    assert!(exit.success());
    for c in clients {
        c.join().unwrap();
    }
    let list = job.run_ok(&["savepoint", "list", job.file().to_str().unwrap()]);
    assert!(list.contains("under-siege"), "{list}");
}

#[test]
fn weir_status_shows_a_running_job_and_a_stopped_one_with_its_last_checkpoint() {
    let (job, child, ep) = start("status-job", 2);
    let file = job.file();
    let file = file.to_str().unwrap();
    job.run_ok(&["savepoint", "trigger", file, "--name", "first"]);
    let s = settled(&ep);
    let table = job.run_ok(&["status", file]);
    assert!(table.contains("job `status-job` is running"), "{table}");
    assert!(
        table.contains(&format!(
            "records read {}",
            grouped(s["records_read"].as_u64().unwrap())
        )),
        "{table}"
    );
    assert!(
        table.contains("PARTITION") && table.contains("OPERATOR"),
        "{table}"
    );
    let rows = table
        .lines()
        .skip_while(|l| !l.starts_with("PARTITION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .count();
    assert_eq!(rows, 2, "a row per partition: {table}");
    let json: Value = serde_json::from_str(
        job.run_ok(&["status", file, "--json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["job"], "status-job");
    assert_eq!(json["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(json["records_read"], s["records_read"]);

    let stopped = job.run_ok(&["stop", file, "--savepoint", "--name", "last-one"]);
    let id = serde_json::from_str::<Value>(stopped.lines().next().unwrap()).unwrap()["id"]
        .as_u64()
        .unwrap();
    let mut child = child;
    assert!(child.wait().unwrap().success());
    let table = job.run_ok(&["status", file]);
    assert!(table.contains("job `status-job` is not running"), "{table}");
    assert!(
        table.contains(&format!("last savepoint: last-one (id {id})")),
        "{table}"
    );
    let json: Value = serde_json::from_str(
        job.run_ok(&["status", file, "--json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["running"], false);
    assert_eq!(json["last_checkpoint"]["name"], "last-one");
    assert_eq!(json["last_checkpoint"]["id"], id);
}
